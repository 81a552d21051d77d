"""

..  autoclass:: line_plugin.LINe
    :members:
    :inherited-members:
    :show-inheritance:

"""

import logging
import os
from typing import Callable, Dict, Optional, Tuple, Union

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
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from typing_extensions import Self

from . import masks
from .presets import preset_hyperparameters
from .statistics import ClassStatistics, check_features

log = logging.getLogger(__name__)

_STATE_VERSION = 1
_HYPERPARAMETERS = ("p_a", "p_w", "clip", "clip_quantile")
#: share of negative training activations above which fitting warns that features are signed
_SIGNED_WARNING = 0.05


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        hint = f"; use {value / 100:g} instead of {value:g}" if _is_percent(value) else ""
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}{hint}")
    return float(value)


def _is_percent(value) -> bool:
    return isinstance(value, (int, float)) and 1 < value <= 100


def _check_clip(clip: Optional[float]) -> Optional[float]:
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < np.inf:
        raise ValueError(f"clip must be a positive finite number or None, got {clip!r}")
    return float(clip)


class LINe(FeaturesDetector):
    """
    Implements LINe from the paper
    *LINe: Out-of-Distribution Detection by Leveraging Important Neurons*.

    LINe keeps, for the class :math:`l` predicted for an input, only the penultimate neurons and
    final-layer weights that matter most to that class, and scores the pruned logits with the
    energy. With penultimate features :math:`a` (:math:`B \\times D`) and a final layer
    :math:`W` (:math:`K \\times D`), :math:`b` (:math:`K`):

    1. **Fit**: class means :math:`A_c` of the unclipped ID features by true label, and
       contributions :math:`C = W \\odot A`, the exact Shapley values of the neurons for a linear
       head (one forward pass, no backward pass).
    2. **Activation mask** of class :math:`l`: keep neuron :math:`j` if
       :math:`C_{lj} > \\mathrm{quantile}(C_{l,:}, p_a)`.
    3. **Weight mask** of class :math:`l`: with :math:`P^l_{kj} = |C_{lj}| W_{kj}`, keep
       :math:`W_{kj}` if :math:`P^l_{kj} > \\mathrm{quantile}(P^l, p_w)`.
    4. **Score**: :math:`h = \\min(a, \\mathrm{clip})`, :math:`l = \\arg\\max (W h + b)`,
       :math:`z = (W \\odot M_l)(h \\odot m_l) + b`; the outlier score is
       :math:`-\\log \\sum_k e^{z_k}` (higher means more likely OOD).

    A fraction of 0 switches that pruning off and ``clip=None`` switches clipping off; with all
    three off, LINe is the energy score. Changing ``p_a``, ``p_w``, ``clip`` or ``clip_quantile``
    after fitting re-derives the masks from the stored class means, without data.

    Memory and time: fitting streams over the data with :math:`O(K D)` memory; scoring never
    builds the :math:`K \\times K \\times D` mask of the official code, nor a
    :math:`B \\times K \\times D` tensor: it loops over the classes predicted in a batch, building
    one :math:`K \\times D` masked weight matrix at a time.

    .. rubric:: Example

    .. code-block:: python

        from line_plugin import LINe

        detector = LINe.from_model(model, preset="cifar10")   # any timm / torchvision model
        detector.fit(train_loader)
        scores = detector(images)                              # higher = more OOD
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

    #: Default search space for :class:`pytorch_ood.utils.GridSearch`: the fractions of neurons
    #: (``p_a``) and weights (``p_w``) pruned, and the absolute clipping threshold (``None``:
    #: no clipping). Tuning re-fits per candidate; LINe only re-derives its masks then.
    hyperparameter_space = {
        "p_a": [0.0, 0.1, 0.5, 0.9],
        "p_w": [0.0, 0.1, 0.5, 0.9],
        "clip": [None, 0.5, 1.0, 2.0],
    }

    def __init__(
        self,
        encoder: Optional[Callable[[Tensor], Tensor]],
        w: Tensor,
        b: Optional[Tensor] = None,
        p_a: float = 0.9,
        p_w: float = 0.9,
        clip: Optional[float] = 1.0,
        clip_quantile: Optional[float] = None,
    ):
        """
        :param encoder: callable mapping inputs to penultimate features of shape
            :math:`B \\times D`. Can be ``None`` when using ``fit_features(...)`` and
            ``predict_features(...)`` directly.
        :param w: weights of the final linear layer, shape :math:`K \\times D`
        :param b: bias of the final linear layer, shape :math:`K` (``None``: zeros)
        :param p_a: fraction in :math:`[0, 1]` of the neurons pruned per class (0: none)
        :param p_w: fraction in :math:`[0, 1]` of the weights pruned per class (0: none)
        :param clip: absolute clipping threshold of the features; ``None`` disables clipping
        :param clip_quantile: if given, a fraction in :math:`[0, 1]`: the clipping threshold is
            fitted as this quantile of the ID training activations (as ReAct does) and ``clip``
            is overwritten by the fit
        :raises ValueError: on malformed weights or hyperparameters
        """
        w = self._check_head(w, b)
        self.encoder = encoder
        self.weight = w.detach().to("cpu", torch.float64).clone()
        if b is None:
            b = torch.zeros(w.shape[0])
        self.bias = b.detach().to("cpu", torch.float64).clone()
        self._p_a = _check_fraction("p_a", p_a)
        self._p_w = _check_fraction("p_w", p_w)
        self._clip = _check_clip(clip)
        self._clip_quantile = (
            None if clip_quantile is None else _check_fraction("clip_quantile", clip_quantile)
        )
        self._reset_fit()

    @staticmethod
    def _check_head(w: Tensor, b: Optional[Tensor]) -> Tensor:
        if not isinstance(w, Tensor) or w.dim() != 2 or 0 in w.shape:
            shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
            raise ValueError(f"w must be a non-empty K x D tensor, got {shape}")
        if not torch.isfinite(w).all():
            raise ValueError("w contains NaN or infinite values")
        if b is not None:
            if not isinstance(b, Tensor) or b.shape != (w.shape[0],):
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"b must have shape K = ({w.shape[0]},) to match w, got {shape}")
            if not torch.isfinite(b).all():
                raise ValueError("b contains NaN or infinite values")
        return w

    def _reset_fit(self) -> None:
        self.class_means: Optional[Tensor] = None  #: :math:`K \times D`, float64
        self.class_counts: Optional[Tensor] = None  #: :math:`K`
        self.activation_sample: Optional[Tensor] = None
        self._invalidate()

    def _invalidate(self) -> None:
        self.activation_keep: Optional[Tensor] = None  #: :math:`K \times D`, bool
        self.weight_threshold: Optional[Tensor] = None  #: :math:`K \times D`, float64
        self._compute: Dict[str, Tensor] = {}

    # -- hyperparameters ---------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """number of classes :math:`K`"""
        return self.weight.shape[0]

    @property
    def num_features(self) -> int:
        """feature width :math:`D`"""
        return self.weight.shape[1]

    @property
    def p_a(self) -> float:
        """fraction of neurons pruned per class"""
        return self._p_a

    @p_a.setter
    def p_a(self, value: float) -> None:
        self._p_a = _check_fraction("p_a", value)
        self._invalidate()

    @property
    def p_w(self) -> float:
        """fraction of final-layer weights pruned per class"""
        return self._p_w

    @p_w.setter
    def p_w(self, value: float) -> None:
        self._p_w = _check_fraction("p_w", value)
        self._invalidate()

    @property
    def clip(self) -> Optional[float]:
        """absolute clipping threshold of the features; ``None``: no clipping"""
        return self._clip

    @clip.setter
    def clip(self, value: Optional[float]) -> None:
        self._clip = _check_clip(value)
        self._clip_quantile = None
        self._compute = {}

    @property
    def clip_quantile(self) -> Optional[float]:
        """if set, ``clip`` is this quantile of the ID training activations"""
        return self._clip_quantile

    @clip_quantile.setter
    def clip_quantile(self, value: Optional[float]) -> None:
        q = None if value is None else _check_fraction("clip_quantile", value)
        self._clip_quantile = q
        if q is not None and self.activation_sample is not None:
            self._clip = self._fitted_clip(q)

    def _fitted_clip(self, q: float) -> float:
        clip = ClassStatistics.sample_quantile(self.activation_sample, q)
        if not clip > 0:
            raise ValueError(
                f"the {q} quantile of the training activations is {clip}, not a positive "
                "clipping threshold: choose a larger clip_quantile or an absolute clip"
            )
        return clip

    def set_hyperparameters(self, **kwargs) -> Self:
        """
        Set hyperparameters by name (``p_a``, ``p_w``, ``clip``, ``clip_quantile``). A fitted
        detector re-derives its masks from the stored class means; no new pass over data.

        :return: self
        :raises ValueError: for unknown names or invalid values
        """
        for name in kwargs:
            if name not in _HYPERPARAMETERS:
                raise ValueError(
                    f"Unknown hyperparameter '{name}' for LINe. "
                    f"Known hyperparameters: {list(_HYPERPARAMETERS)}"
                )
        for name, value in kwargs.items():
            setattr(self, name, value)
        return self

    # -- presets and construction --------------------------------------------------------------

    @classmethod
    def from_preset(
        cls, preset: str, encoder: Optional[Callable[[Tensor], Tensor]], w: Tensor, b: Tensor
    ) -> "LINe":
        """
        A detector with the paper's settings for ``"cifar10"``, ``"cifar100"`` or ``"imagenet"``
        (see :data:`line_plugin.PRESETS`).

        :raises ValueError: for an unknown preset
        """
        return cls(encoder, w, b, **preset_hyperparameters(preset))

    @classmethod
    def from_model(cls, model: torch.nn.Module, preset: Optional[str] = None, **kwargs) -> "LINe":
        """
        A detector for a classifier whose penultimate layer is found automatically by
        :func:`line_plugin.split_model` (timm, torchvision and plain ``nn.Module`` classifiers).

        :param model: classifier; it is put in eval mode
        :param preset: optional paper preset (``"cifar10"``, ``"cifar100"``, ``"imagenet"``)
        :param kwargs: hyperparameters (``p_a``, ``p_w``, ``clip``, ``clip_quantile``); they
            override the preset's
        :raises ValueError: if the model's logits cannot be reproduced from a linear head
        """
        from .adapter import split_model

        if preset is not None:  # checked before the model is split
            kwargs = {**preset_hyperparameters(preset), **kwargs}
        encoder, weight, bias = split_model(model)
        return cls(encoder, weight, bias, **kwargs)

    # -- fitting -------------------------------------------------------------------------------

    @torch.no_grad()
    def fit(self, data_loader: DataLoader, progress: bool = True) -> Self:
        """
        One streaming pass over ``data_loader`` through the encoder: class sums and counts of the
        features in float64, memory :math:`O(K D)` whatever the number of samples. Under an
        initialized :mod:`torch.distributed` process group, each process passes its own shard
        and the statistics of all processes are combined.

        :param data_loader: yields batches ``(x, y)``; samples with ``y < 0`` are ignored
        :param progress: show a progress bar
        :return: the fitted detector
        :raises ModelNotSetException: without an encoder
        :raises ValueError: on bad features or labels, or if a class has no sample
        """
        if self.encoder is None:
            raise ModelNotSetException("LINe.fit() needs an encoder; use fit_features() without")
        device = self.device
        if device is None:
            device = "cpu"
            log.warning(f"No device set. Will use '{device}'.")
            self.to(device)
        stats = ClassStatistics(self.num_classes, self.num_features)
        for x, y in tqdm(data_loader, desc="LINe fit", disable=not progress, leave=False):
            y = torch.as_tensor(y)
            known = y >= 0
            if not known.any():
                continue
            if not known.all():  # the others are not encoded; no copy of a batch without them
                x, y = x[known.to(x.device)], y[known]
            stats.update(self.encoder(x.to(device)), y)
        return self._finish_fit(stats)

    @torch.no_grad()
    def fit_features(self, x: Tensor, y: Tensor) -> Self:
        """
        Fit on features directly; the same result as :meth:`fit` on the inputs of ``x``.

        :param x: training features, shape :math:`N \\times D`
        :param y: integer labels, shape :math:`N`; samples with ``y < 0`` are ignored
        :return: the fitted detector
        :raises ValueError: on bad features or labels, or if a class has no sample
        """
        stats = ClassStatistics(self.num_classes, self.num_features)
        stats.update(x, y)
        return self._finish_fit(stats)

    def _finish_fit(self, stats: ClassStatistics) -> Self:
        stats.all_reduce()
        means = stats.class_means()
        # every contribution W * A and weight-mask product |C| W is at most this, in float64
        w_max = float(self.weight.abs().max())
        if not np.isfinite(float(means.abs().max()) * w_max * max(1.0, w_max)):
            raise ValueError(
                "the class means times the final-layer weights overflow float64: scale the "
                "features down"
            )
        self._reset_fit()
        self.class_means = means.to(self.weight.device)
        self.class_counts = stats.counts.to(self.weight.device)
        self.activation_sample = stats.sample().to(self.weight.device)
        if self._clip_quantile is not None:
            self._clip = self._fitted_clip(self._clip_quantile)
        negative = float((self.activation_sample < 0).float().mean())
        if negative > _SIGNED_WARNING and (self._p_a > 0 or self._p_w > 0):
            log.warning(
                f"{100 * negative:.0f} % of the training activations are negative: LINe's masks "
                "assume post-ReLU features, and the paper's fractions can hurt on signed features "
                "(ViT, ConvNeXt); tune p_a, p_w and clip on a validation split (see the README)"
            )
        self._derive_masks()
        return self

    def _derive_masks(self) -> None:
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        weight = self.weight.cpu().numpy()
        contrib = masks.contributions(weight, self.class_means.cpu().numpy())
        keep = masks.activation_mask(contrib, self._p_a)
        threshold = masks.weight_thresholds(weight, contrib, self._p_w)
        device = self.weight.device
        self.activation_keep = torch.from_numpy(keep).to(device)
        self.weight_threshold = torch.from_numpy(threshold).to(device)
        self._compute = {}

    def _tensors(self, dtype: torch.dtype) -> Dict[str, Tensor]:
        """weights and masks in the compute dtype, derived once per hyperparameter setting"""
        if self.weight_threshold is None:
            self._derive_masks()
        key = str(dtype)
        if key not in self._compute:
            # dropped neurons get the threshold +inf: their whole column of W is masked
            folded = self.weight_threshold.masked_fill(~self.activation_keep, np.inf)
            self._compute[key] = {
                "w": self.weight.to(dtype),
                "b": self.bias.to(dtype),
                "keep": self.activation_keep,
                "threshold": folded.to(dtype),
            }
        return self._compute[key]

    # -- scoring -------------------------------------------------------------------------------

    def predict(self, x: Tensor) -> Tensor:
        """
        :param x: inputs, passed through ``encoder``
        :return: outlier scores of shape :math:`B`
        :raises ModelNotSetException: without an encoder
        :raises RequiresFittingException: before fitting
        """
        if self.encoder is None:
            raise ModelNotSetException("LINe.predict() needs an encoder; use predict_features()")
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        device = self.device
        if device is not None:
            x = x.to(device)
        with torch.no_grad():
            return self.predict_features(self.encoder(x))

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """
        :param x: penultimate features, shape :math:`B \\times D`; float16 and bfloat16 are
            computed in float32, float64 in float64. Rows whose logits overflow the compute dtype
            (huge features) are recomputed in float64, scaled by a power of two, so that every
            finite input gets a finite score: a score beyond the range of the output dtype
            saturates at its largest finite value.
        :return: outlier scores (negative energy of the pruned logits), shape :math:`B`; float64
            for float64 features, float32 otherwise
        :raises RequiresFittingException: before fitting
        :raises ValueError: on features of the wrong width or with NaN/Inf values
        """
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        check_features(x, self.num_features)
        logits, z = self._logits(x, self._compute_dtype(x))
        scores = -torch.logsumexp(z, dim=1)
        overflow = ~(torch.isfinite(logits).all(dim=1) & torch.isfinite(z).all(dim=1))
        if overflow.any():
            limit = torch.finfo(scores.dtype).max
            wide = self._scaled_scores(x[overflow]).clamp(min=-limit, max=limit)
            scores[overflow] = wide.to(scores.dtype)
        return scores

    def pruned_logits(self, x: Tensor) -> Tensor:
        """
        The logits :math:`z = (W \\odot M_l)(h \\odot m_l) + b` of step 4.

        :param x: penultimate features, shape :math:`B \\times D`
        :return: pruned logits, shape :math:`B \\times K`, in the compute dtype (see
            :meth:`predict_features`); rows of huge features may hold infinite values there
        """
        return self._logits(x, self._compute_dtype(x))[1]

    @staticmethod
    def _compute_dtype(x: Tensor) -> torch.dtype:
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _logits(
        self, x: Tensor, dtype: torch.dtype, scale: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """
        The full logits (which pick the class) and the pruned logits of ``x`` in ``dtype``; with
        ``scale`` (:math:`B \\times 1`), those of the clipped features divided by ``scale``.
        """
        t = self._tensors(dtype)
        w, b = t["w"].to(x.device), t["b"].to(x.device)
        h = x.to(dtype)
        if self._clip is not None:
            h = h.clamp(max=self._clip)
        if scale is not None:
            h, b = h / scale, b / scale
        logits = torch.addmm(b, h, w.T)
        if self._p_w == 0:
            if self._p_a == 0:
                return logits, logits
            keep = t["keep"].to(x.device)[logits.argmax(dim=1)]
            return logits, torch.addmm(b, h * keep, w.T)
        pred = logits.argmax(dim=1)
        return logits, self._masked_logits(h, pred, w, b, t["threshold"].to(x.device))

    def _scaled_scores(self, x: Tensor) -> Tensor:
        """
        Float64 scores of features whose logits overflow: each row of clipped features is divided
        by a power of two near its largest magnitude (exact), so no product or sum overflows;
        the logits are scaled back only inside the log-sum-exp, where overflow means the score
        itself is out of range (:math:`\\pm\\infty`, never NaN).
        """
        h = x.to(torch.float64)
        if self._clip is not None:
            h = h.clamp(max=self._clip)
        largest = h.abs().amax(dim=1, keepdim=True)
        # floor(log2) is within one of the exponent; any power of two in [1, 2**1023] is exact
        scale = torch.exp2(torch.log2(largest).floor().clamp(min=0, max=1023))
        _, z = self._logits(x, torch.float64, scale)
        return -torch.logsumexp(z * scale, dim=1)

    @staticmethod
    def _masked_logits(h: Tensor, pred: Tensor, w: Tensor, b: Tensor, threshold: Tensor) -> Tensor:
        # samples sorted by predicted class; one K x D masked weight matrix per class, built in
        # place as (W > T_l) * W (exact: each weight is multiplied by 1 or 0), and the logits of
        # each class's rows written into a contiguous slice; b is K or B x K
        order = pred.argsort()
        classes, counts = torch.unique_consecutive(pred[order], return_counts=True)
        h_sorted = h[order]
        b_sorted = b if b.dim() == 1 else b[order]
        z_sorted = torch.empty(h.shape[0], w.shape[0], dtype=h.dtype, device=h.device)
        masked = torch.empty_like(w)
        start = 0
        for label, count in zip(classes.tolist(), counts.tolist()):
            end = start + count
            torch.gt(w, threshold[label], out=masked).mul_(w)
            bias = b_sorted if b.dim() == 1 else b_sorted[start:end]
            torch.addmm(bias, h_sorted[start:end], masked.T, out=z_sorted[start:end])
            start = end
        return torch.empty_like(z_sorted).index_copy_(0, order, z_sorted)

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> Dict:
        """
        The fitted state: head, class statistics, masks, hyperparameters and shapes.

        :raises RequiresFittingException: before fitting
        """
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted before saving its state")
        if self.weight_threshold is None:
            self._derive_masks()
        return {
            "version": _STATE_VERSION,
            "num_classes": self.num_classes,
            "num_features": self.num_features,
            "hyperparameters": {
                "p_a": self._p_a,
                "p_w": self._p_w,
                "clip": self._clip,
                "clip_quantile": self._clip_quantile,
            },
            "weight": self.weight.cpu(),
            "bias": self.bias.cpu(),
            "class_means": self.class_means.cpu(),
            "class_counts": self.class_counts.cpu(),
            "activation_sample": self.activation_sample.cpu(),
            "activation_keep": self.activation_keep.cpu(),
            "weight_threshold": self.weight_threshold.cpu(),
        }

    def load_state_dict(self, state: Dict) -> Self:
        """
        Restore a state from :meth:`state_dict`; the round trip is exact.

        :raises ValueError: if the state is malformed or was fitted for another final layer
        """
        keys = {"version", "num_classes", "num_features", "hyperparameters", "weight", "bias"}
        keys |= {"class_means", "class_counts", "activation_sample"}
        keys |= {"activation_keep", "weight_threshold"}
        if not isinstance(state, dict) or not keys <= set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else "all"
            raise ValueError(f"not a LINe state: missing {missing}")
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"unsupported LINe state version {state['version']}")
        shape = (state["num_classes"], state["num_features"])
        if shape != tuple(self.weight.shape):
            raise ValueError(
                f"the state was fitted for a final layer of shape {shape} (K x D), but this "
                f"detector's is {tuple(self.weight.shape)}"
            )
        if not torch.equal(state["weight"].to(torch.float64), self.weight.cpu()) or not (
            torch.equal(state["bias"].to(torch.float64), self.bias.cpu())
        ):
            raise ValueError(
                "the state was fitted for another final layer (its weights differ from this "
                "detector's): fit again for this model"
            )
        for name, expected in (
            ("class_means", shape),
            ("activation_keep", shape),
            ("weight_threshold", shape),
            ("class_counts", shape[:1]),
        ):
            if tuple(state[name].shape) != expected:
                raise ValueError(f"{name} has shape {tuple(state[name].shape)}, not {expected}")
        hp = state["hyperparameters"]
        self._p_a = _check_fraction("p_a", hp["p_a"])
        self._p_w = _check_fraction("p_w", hp["p_w"])
        self._clip = _check_clip(hp["clip"])
        cq = hp["clip_quantile"]
        self._clip_quantile = None if cq is None else _check_fraction("clip_quantile", cq)
        device = self.weight.device
        self._reset_fit()
        self.class_means = state["class_means"].to(device, torch.float64).clone()
        self.class_counts = state["class_counts"].to(device).clone()
        self.activation_sample = state["activation_sample"].to(device).clone()
        self.activation_keep = state["activation_keep"].to(device, torch.bool).clone()
        self.weight_threshold = state["weight_threshold"].to(device, torch.float64).clone()
        return self

    def save(self, path: Union[str, os.PathLike]) -> None:
        """
        Save the fitted state (:meth:`state_dict`) to ``path`` with :func:`torch.save`.
        """
        torch.save(self.state_dict(), path)

    def load(self, path: Union[str, os.PathLike]) -> Self:
        """
        Load a state saved with :meth:`save` (with ``weights_only=True``).

        :raises ValueError: if the file holds no LINe state for this detector's final layer
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:  # pickle or zip errors: not a state file
            raise ValueError(f"{path} is not a saved LINe state: {e}") from e
        return self.load_state_dict(state)
