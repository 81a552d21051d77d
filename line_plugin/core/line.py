"""

..  autoclass:: line_plugin.core.LINe
    :members:
    :inherited-members:
    :show-inheritance:

"""

from typing import Callable, Iterable, Optional, Tuple, Union

import numpy as np
import torch
from pytorch_ood.api import (
    DetectorInfo,
    FeaturesDetector,
    ModelNotSetException,
    Paper,
    RequiresFittingException,
    Task,
)
from pytorch_ood.detector.energy import EnergyBased
from pytorch_ood.utils import is_known
from pytorch_ood.utils.utils import _check_fraction
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import Self


class LINe(FeaturesDetector):
    """
    Implements LINe from the paper
    *LINe: Out-of-Distribution Detection by Leveraging Important Neurons*.

    With features :math:`a` and a linear head :math:`W` (:math:`K \\times D`), :math:`b`, LINe
    keeps the neurons and weights that matter most to the predicted class:

    1. **Fit**: the ID class means :math:`A` and the contributions :math:`C = W \\odot A` (the
       Shapley values of the neurons for the logits of a linear head).
    2. **Activation mask** :math:`m_l`: keep neuron :math:`j` if
       :math:`C_{lj} > \\mathrm{quantile}(C_{l,:}, p_a)`.
    3. **Weight mask** :math:`M_l`: keep :math:`W_{kj}` if
       :math:`|C_{lj}| W_{kj} > \\mathrm{quantile}(|C_{l,:}| \\odot W, p_w)`.
    4. **Score**: :math:`h = \\min(a, \\mathrm{clip})`, :math:`l = \\arg\\max (W h + b)`,
       :math:`z = (W \\odot M_l)(h \\odot m_l) + b`, mapped to outlier scores by ``detector``.

    Quantiles interpolate linearly; a fraction of 0 or ``clip=None`` turns that part off (all
    off: :class:`EnergyBased`). Fitting is one pass into float64 class sums. :math:`M_l` keeps
    :math:`W_{kj}` if and only if :math:`W_{kj} > T_{lj}` (:math:`|C_{lj}| W_{kj}` is monotone in
    :math:`W_{kj}`): :math:`K \\times D` thresholds replace :math:`K \\times K \\times D`
    masks, and scoring builds one masked :math:`K \\times D` matrix per predicted class.

    Public: ``weight``, ``bias``, ``class_means``, ``class_counts`` (float64, int64, on the CPU;
    assigning the last two restores a fitted detector), ``activation_keep``, ``weight_threshold``,
    ``p_a``, ``p_w``, ``clip``, ``encoder``, ``detector``; for subclasses, :meth:`fit_batches`,
    :meth:`fit_class_sums` and :meth:`weight_thresholds`.

    .. rubric:: Examples

    .. code-block:: python

        detector = LINe(model.features, w=model.fc.weight, b=model.fc.bias, p_a=0.9, p_w=0.9)
        detector.fit(train_loader)
        scores = detector(images)
    """

    info = DetectorInfo(
        paper=Paper(
            title="LINe: Out-of-Distribution Detection by Leveraging Important Neurons",
            venue="CVPR",
            year=2023,
            url="https://arxiv.org/abs/2303.13995",
            code="https://github.com/YongHyun-Ahn/LINe-Out-of-Distribution-Detection-by-Leveraging-Important-Neurons",
        ),
        tasks={Task.CLASSIFICATION},
        ai_coded=True,
    )

    requires_fit = True

    #: Default search space for :class:`pytorch_ood.utils.GridSearch`: the paper's values.
    hyperparameter_space = {"p_a": [0.1, 0.9], "p_w": [0.1, 0.9], "clip": [None, 1.0]}

    def __init__(
        self,
        encoder: Optional[Callable[[Tensor], Tensor]],
        w: Tensor,
        b: Optional[Tensor] = None,
        p_a: float = 0.9,
        p_w: float = 0.9,
        clip: Optional[float] = 1.0,
        detector: Optional[Callable[[Tensor], Tensor]] = None,
    ):
        """
        :param encoder: maps inputs to features :math:`B \\times D` (``None``: features only)
        :param w: weights of the last layer, :math:`K \\times D`
        :param b: bias of the last layer, :math:`K` (``None``: zeros)
        :param p_a: fraction in :math:`[0, 1]` of the neurons pruned per class
        :param p_w: fraction in :math:`[0, 1]` of the weights pruned per class
        :param clip: clipping threshold of the features; ``None``: no clipping
        :param detector: maps the pruned logits to outlier scores (default: the energy)
        """
        self.encoder = encoder
        b = torch.zeros(len(w)) if b is None else b
        self.weight = w.detach().to("cpu", torch.float64).clone()
        self.bias = b.detach().to("cpu", torch.float64).clone()
        self.p_a, self.p_w = _check_fraction("p_a", p_a), _check_fraction("p_w", p_w)
        self.clip = clip
        self.detector = detector or EnergyBased.score
        self.class_means = self.class_counts = None  # Optional[Tensor]
        self._derived = None  # (class_means, (p_a, p_w), keep, threshold, {casts})

    def to(self, device: Union[str, torch.device]) -> Self:
        """Move the encoder; the statistics stay on the CPU (scoring casts them as it needs)"""
        self._device = torch.device(device)
        self.encoder = self._move_value_to_device(self.encoder, self._device)
        return self

    @property
    def device(self) -> Optional[torch.device]:
        """the device set by :meth:`to`, else the encoder's, else the CPU (of the statistics)"""
        device = getattr(self, "_device", None) or self._infer_value_device(self.encoder)
        return device or self.weight.device

    # -- step 1: class means -------------------------------------------------------------------

    @torch.no_grad()
    def fit(self, data_loader: DataLoader) -> Self:
        """
        :param data_loader: yields batches ``(x, y)``; samples with ``y < 0`` are ignored
        :return: the fitted detector
        """
        if self.encoder is None:
            raise ModelNotSetException()
        return self.fit_batches((self.encoder(x.to(self.device)), y) for x, y in data_loader)

    def fit_features(self, x: Tensor, y: Tensor) -> Self:
        """fit on features ``x`` (:math:`N \\times D`) and labels ``y`` (``y < 0``: ignored)"""
        return self.fit_batches([(x, y)])

    @torch.no_grad()
    def fit_batches(self, batches: Iterable[Tuple[Tensor, Tensor]]) -> Self:
        """fit on pairs of features and labels, added in one pass to float64 class sums"""
        sums = torch.zeros(self.weight.shape, dtype=torch.float64)
        counts = torch.zeros(len(self.weight), dtype=torch.int64)
        for x, y in batches:
            known = is_known(y)
            x, y = x[known.to(x.device)], y[known].to("cpu", torch.int64)
            sums.index_add_(0, y, x.cpu().double())
            counts += torch.bincount(y, minlength=len(counts))
        return self.fit_class_sums(sums, counts)

    def fit_class_sums(self, sums: Tensor, counts: Tensor) -> Self:
        """fit the class means ``sums / counts`` (float64 :math:`K \\times D`, int64 :math:`K`)"""
        if (counts == 0).any():
            raise ValueError("LINe needs a training sample of every class")
        self.class_means, self.class_counts = sums / counts[:, None], counts
        return self

    # -- steps 2 and 3: masks ------------------------------------------------------------------

    @property
    def activation_keep(self) -> Tensor:
        """the masks :math:`m_l` of step 2 as rows of a :math:`K \\times D` bool tensor"""
        return self._masks()[2]

    @property
    def weight_threshold(self) -> Tensor:
        """the masks of step 3 as :math:`K \\times D` float64 thresholds :math:`T`"""
        return self._masks()[3]

    def weight_thresholds(self, scale: np.ndarray) -> np.ndarray:
        """
        :param scale: :math:`|C_{l,:}|` of class :math:`l`, shape :math:`D`
        :return: :math:`T_{l,:}`, each column's largest pruned weight (:math:`-\\infty`: none)
        """
        weight = self.weight.numpy()
        products = weight * scale
        cut = np.quantile(products, self.p_w)
        return np.where(products <= cut, weight, -np.inf).max(axis=0)

    def _masks(self) -> tuple:
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        derived, key = self._derived, (self.p_a, self.p_w)
        if derived is None or derived[0] is not self.class_means or derived[1] != key:
            p_a, p_w = _check_fraction("p_a", self.p_a), _check_fraction("p_w", self.p_w)
            contrib = self.weight.numpy() * self.class_means.numpy()  # C = W * A
            keep = np.ones(contrib.shape, dtype=bool)
            if p_a > 0:
                keep = contrib > np.quantile(contrib, p_a, axis=1)[:, None]
            threshold = np.full(contrib.shape, -np.inf)
            if p_w > 0:
                for label, row in enumerate(np.abs(contrib)):
                    threshold[label] = self.weight_thresholds(row)
            keep, threshold = torch.from_numpy(keep), torch.from_numpy(threshold)
            self._derived = derived = (self.class_means, key, keep, threshold, {})
        return derived

    # -- step 4: score -------------------------------------------------------------------------

    def predict(self, x: Tensor) -> Tensor:
        """:return: outlier scores of the inputs ``x``, passed through ``encoder``"""
        if self.encoder is None:
            raise ModelNotSetException()
        with torch.no_grad():
            return self.predict_features(self.encoder(x.to(self.device or x.device)))

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """:return: outlier scores of features ``x`` (float64 in float64, others in float32)"""
        return self.detector(self.pruned_logits(x))

    @torch.no_grad()
    def pruned_logits(self, x: Tensor) -> Tensor:
        """:return: the pruned logits :math:`z` (step 4) of features ``x``"""
        _, _, keep, threshold, casts = self._masks()
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if (dtype, x.device) not in casts:  # cast on the CPU, then moved
            folded = threshold.masked_fill(~keep, np.inf)
            cast = (self.weight.to(dtype), self.bias.to(dtype), folded.to(dtype), keep)
            casts[dtype, x.device] = [t.to(x.device) for t in cast]
        w, b, folded, keep = casts[dtype, x.device]
        h = x.to(dtype) if self.clip is None else x.to(dtype).clamp(max=self.clip)
        logits = torch.addmm(b, h, w.T)
        if self.p_w == 0 and self.p_a == 0:
            return logits
        pred = logits.argmax(dim=1)
        if self.p_w == 0:
            return torch.addmm(b, h * keep[pred], w.T)
        return self._masked_logits(h, pred, w, b, folded)

    @staticmethod
    def _masked_logits(h: Tensor, pred: Tensor, w: Tensor, b: Tensor, threshold: Tensor) -> Tensor:
        """:math:`z_i = (W \\odot [W > T_{l_i}]) h_i + b`: one masked matrix per class"""
        order = pred.argsort()
        classes, counts = torch.unique_consecutive(pred[order], return_counts=True)
        h, b_sorted = h[order], (b if b.dim() == 1 else b[order])
        z = torch.empty(len(h), len(w), dtype=h.dtype, device=h.device)
        masked = torch.empty_like(w)
        start = 0
        for label, count in zip(classes.tolist(), counts.tolist()):
            rows = slice(start, start + count)
            torch.gt(w, threshold[label], out=masked).mul_(w)
            bias = b_sorted if b.dim() == 1 else b_sorted[rows]
            torch.addmm(bias, h[rows], masked.T, out=z[rows])
            start += count
        return torch.empty_like(z).index_copy_(0, order, z)
