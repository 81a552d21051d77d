"""

..  autoclass:: line_plugin.core.LINe
    :members:
    :inherited-members:
    :show-inheritance:

"""

import logging
from typing import Callable, Iterable, Optional, Tuple

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

log = logging.getLogger(__name__)


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

    :meth:`fit` does steps 1 to 3 in float64 (summed on the CPU) and logs them; scoring is step
    4. Quantiles interpolate linearly. A fraction of 0 keeps everything (the authors' percentile
    0 prunes the smallest entry); ``clip=None`` does not clip (all off: :class:`EnergyBased
    <pytorch_ood.detector.EnergyBased>`). As :math:`|C_{lj}| W_{kj}` is monotone in
    :math:`W_{kj}`, :math:`M_l` keeps :math:`W_{kj}` if and only if :math:`W_{kj} > T_{lj}`:
    ``weight_threshold`` holds :math:`T` (:math:`K \\times D`), ``activation_keep`` the
    :math:`m_l` as rows, and scoring builds one masked :math:`W` per predicted class.

    The state (``weight``, ``bias``, the masks) has the dtype of ``w``, at least float32, and
    follows :meth:`to`; float64 features are scored in float64, others in float32. Change ``p_a``
    or ``p_w``, then fit again (``clip`` applies at once). Fitting needs a sample of every class,
    labels below :math:`K` and finite features; scoring lets NaN through as NaN.

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
            code="https://github.com/YongHyun-Ahn/"
            "LINe-Out-of-Distribution-Detection-by-Leveraging-Important-Neurons",
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
        self.weight = w.detach().to(dtype=torch.promote_types(w.dtype, torch.float32), copy=True)
        self.bias = (torch.zeros(len(w)) if b is None else b.detach()).to(self.weight, copy=True)
        self.p_a, self.p_w = _check_fraction("p_a", p_a), _check_fraction("p_w", p_w)
        self.clip = clip
        self.detector = detector or EnergyBased.score
        self.activation_keep = self.weight_threshold = self._fractions = None  # set by fit()

    def fit(self, data_loader: DataLoader) -> Self:
        """
        :param data_loader: yields batches ``(x, y)``; samples with ``y < 0`` are ignored
        :return: the fitted detector
        :raises ValueError: for a label :math:`\\geq K`, a class without samples, features of
            another width than ``w`` or non-finite ones
        """
        if self.encoder is None:
            raise ModelNotSetException()
        return self._fit((self.encoder(x.to(self.device)), y) for x, y in data_loader)

    def fit_features(self, x: Tensor, y: Tensor) -> Self:
        """:meth:`fit` on features ``x`` (:math:`N \\times D`) and labels ``y`` (:math:`N`)"""
        return self._fit([(x, y)])

    @torch.no_grad()
    def _fit(self, batches: Iterable[Tuple[Tensor, Tensor]]) -> Self:
        k, d = self.weight.shape
        sums, counts = torch.zeros(k, d, dtype=torch.float64), torch.zeros(k, dtype=torch.int64)
        for x, y in batches:  # step 1
            y = torch.as_tensor(y).cpu()
            x, y = x.flatten(1)[is_known(y).to(x.device)].cpu().double(), y[is_known(y)].long()
            if len(y) and int(y.max()) >= k:
                raise ValueError(f"label {int(y.max())} is out of range for {k} classes")
            if x.shape[1] != d:
                raise ValueError(f"features of width {x.shape[1]}, but w has {d} columns")
            sums.index_add_(0, y, x)
            counts += torch.bincount(y, minlength=k)
        if (counts == 0).any():
            missing = (counts == 0).nonzero().flatten().tolist()
            raise ValueError(f"no training sample of class(es) {missing}: LINe needs their means")
        means = (sums / counts[:, None]).numpy()
        if not np.isfinite(means).all():
            bad = np.flatnonzero(~np.isfinite(means).all(axis=1)).tolist()
            raise ValueError(f"features of class(es) {bad} contain NaN or infinite values")
        p_a, p_w = _check_fraction("p_a", self.p_a), _check_fraction("p_w", self.p_w)
        weight = self.weight.cpu().double().numpy()
        contrib = weight * means
        keep = np.ones(contrib.shape, dtype=bool)
        if p_a > 0:  # step 2
            keep = contrib > np.quantile(contrib, p_a, axis=1, keepdims=True)
        threshold = np.full(contrib.shape, -np.inf)
        if p_w > 0:  # step 3
            threshold = _weight_thresholds(weight, np.abs(contrib), p_w)
        self.activation_keep = torch.from_numpy(keep).to(self.weight.device)
        self.weight_threshold = torch.from_numpy(threshold).to(self.weight)
        self._fractions = (p_a, p_w)
        log.info(f"LINe: {keep.mean():.1%} of the neurons kept, weights above the {p_w} quantile")
        return self

    def predict(self, x: Tensor) -> Tensor:
        """:return: outlier scores of the inputs ``x``, passed through ``encoder``"""
        if self.encoder is None:
            raise ModelNotSetException()
        with torch.no_grad():
            return self.predict_features(self.encoder(x.to(self.device)).flatten(1))

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """:return: outlier scores of features ``x`` (:math:`B \\times D`), shape :math:`B`"""
        return self.detector(self.pruned_logits(x))

    @torch.no_grad()
    def pruned_logits(self, x: Tensor) -> Tensor:
        """
        :param x: features :math:`B \\times D`
        :return: the pruned logits :math:`z` of step 4, :math:`B \\times K`
        :raises RequiresFittingException: before :meth:`fit`, or if ``p_a`` or ``p_w`` changed
        """
        if self._fractions != (self.p_a, self.p_w):
            raise RequiresFittingException("LINe has to be fitted for its p_a and p_w: call fit()")
        dtype = torch.promote_types(x.dtype, self.weight.dtype)
        w, b, h = self.weight.to(dtype), self.bias.to(dtype), x.to(self.weight.device, dtype)
        h = h if self.clip is None else h.clamp(max=self.clip)
        z = torch.addmm(b, h, w.T)
        if self.p_a == 0 and self.p_w == 0:
            return z
        pred = z.argmax(dim=1)
        h = h * self.activation_keep[pred] if self.p_a > 0 else h
        if self.p_w == 0:
            return torch.addmm(b, h, w.T)
        order = pred.argsort()  # one masked W per class: W * [W > T_l]
        classes, counts = torch.unique_consecutive(pred[order], return_counts=True)
        h, threshold, masked, start = h[order], self.weight_threshold.to(dtype), w.clone(), 0
        for label, count in zip(classes.tolist(), counts.tolist()):
            torch.gt(w, threshold[label], out=masked).mul_(w)
            z[order[start : start + count]] = torch.addmm(b, h[start : start + count], masked.T)
            start += count
        return z


def _weight_thresholds(weight: np.ndarray, scales: np.ndarray, p: float) -> np.ndarray:
    # Step 3, exactly: for each row s of scales, the largest pruned weight per column (-inf:
    # none). A sample of the products brackets the two order statistics of the quantile, which
    # are selected among the products in the bracket, counted per column by binary search in the
    # sorted weights: about O(D log K) per class instead of O(KD).
    k, d = weight.shape
    columns, ordered = np.arange(d), np.sort(weight, axis=0)
    virtual = (weight.size - 1) * p  # NumPy's linear quantile of the K * D products
    lo, hi, t = int(virtual), min(int(virtual) + 1, weight.size - 1), virtual - int(virtual)
    m = min(16384, weight.size)
    drawn = np.random.default_rng(0).choice(weight.size, size=m, replace=False)
    drawn_weights, drawn_columns = weight.flat[drawn], drawn % d
    spread = int(8 * np.sqrt(m * max(p * (1 - p), 1 / m))) + 8
    ranks = (int(p * (m - 1)) - spread, int(p * (m - 1)) + spread + 1)
    inside = tuple(min(max(r, 0), m - 1) for r in ranks)

    def count(s: np.ndarray, v: float) -> np.ndarray:  # per column, the products <= v
        r, step = np.zeros(d, dtype=np.int64), 1 << (k.bit_length() - 1)
        while step:  # a binary search, as the products of a sorted column rise
            ok = (r + step <= k) & (s * ordered[np.minimum(r + step, k) - 1, columns] <= v)
            r, step = r + ok * step, step // 2
        return r

    out = np.empty(scales.shape)
    for label, s in enumerate(scales):
        sample = np.partition(drawn_weights * s[drawn_columns], inside)
        low = count(s, sample[inside[0]] if ranks[0] >= 0 else -np.inf)
        high = count(s, sample[inside[1]] if ranks[1] < m else np.inf)
        if low.sum() > lo or high.sum() <= hi:  # the bracket missed: all products
            low, high = np.zeros(d, dtype=int), np.full(d, k)
        sizes, below = high - low, int(low.sum())
        cols = np.repeat(columns, sizes)
        at = np.arange(len(cols)) + np.repeat(low - np.cumsum(sizes) + sizes, sizes)
        part = np.partition(ordered[at, cols] * s[cols], (lo - below, hi - below))
        a, b = part[lo - below], part[hi - below]
        pruned = count(s, b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
        out[label] = np.where(pruned > 0, ordered[np.maximum(pruned - 1, 0), columns], -np.inf)
    return out
