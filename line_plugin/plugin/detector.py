"""
``line_plugin.LINe``: the upstream detector with the conveniences that do not belong upstream.
It uses only what :class:`line_plugin.core.LINe` documents as public, so that it runs unchanged
on top of ``pytorch_ood.detector.LINe``.

..  autoclass:: line_plugin.LINe
    :members: from_model, from_preset, fit, clip_quantile, save, load
    :show-inheritance:
"""

import logging
import os
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import torch
from pytorch_ood.api import ModelNotSetException, RequiresFittingException
from pytorch_ood.detector.energy import EnergyBased
from pytorch_ood.utils import is_known
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from typing_extensions import Self

from ..adapter import split_model
from ..core import LINe as CoreLINe
from . import checks, distributed, fused, overflow
from . import state as state_files
from .auto import AUTO, HYPERPARAMETERS, AutoChoice, fit_auto
from .presets import check_preset, preset_hyperparameters, resolve_preset
from .sample import ActivationSample

log = logging.getLogger(__name__)

#: share of negative training activations above which fitting warns that features are signed
SIGNED_WARNING = 0.05
#: rows of features widened to float64 at a time while fitting, as a number of values
CHUNK = 2**21


class LINe(CoreLINe):
    """
    :class:`line_plugin.core.LINe` (the detector as pytorch-ood holds it), plus:

    - :meth:`from_model` (any timm, torchvision or plain classifier, split by
      :func:`line_plugin.split_model`) and :meth:`from_preset` (the paper's settings);
    - a clear error for every bad input (shapes, labels, NaN or infinite features, classes
      without samples), where the upstream detector lets NaN through as NaN;
    - a progress bar in :meth:`fit`, shown only on a terminal;
    - fitting under :mod:`torch.distributed` (:mod:`line_plugin.plugin.distributed`): class
      sums added over the processes, a ``DistributedSampler``'s padding dropped;
    - ``clip_quantile``: the clip fitted as a quantile of the ID training activations (as
      ReAct does), from a bounded sample of them, and a warning when the features are signed;
    - a finite energy for every finite input (:mod:`line_plugin.plugin.overflow`);
    - the exact float64 class means, kept on the host (``class_means``, ``class_counts``), from
      which :meth:`set_hyperparameters` derives new masks without data;
    - :meth:`save` and :meth:`load`: state files with metadata
      (:mod:`line_plugin.plugin.state`);
    - on CUDA, fused scoring (:mod:`line_plugin.plugin.fused`), where Triton is installed.

    .. rubric:: Example

    .. code-block:: python

        from line_plugin import LINe

        detector = LINe.from_model(model, preset="cifar10")   # any timm / torchvision model
        detector.fit(train_loader)
        scores = detector(images)                              # higher = more OOD
    """

    #: its own attribute, as every pytorch-ood detector class has; the core's paper and tasks
    info = CoreLINe.info

    #: The wider search space of the project's benchmarks (64 candidates; the upstream class
    #: has 8): each candidate derives new masks from the class means.
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
        detector: Optional[Callable[[Tensor], Tensor]] = None,
    ):
        """
        :param clip_quantile: if given, a fraction in :math:`[0, 1]`: the clipping threshold is
            fitted as this quantile of the ID training activations and ``clip`` is overwritten
            by the fit

        The other parameters are those of :class:`line_plugin.core.LINe`.

        :raises ValueError: on malformed weights or hyperparameters
        """
        checks.head(w, b)
        p_a, p_w = checks.fraction("p_a", p_a), checks.fraction("p_w", p_w)
        clip, clip_quantile = checks.clip(clip), _quantile(clip_quantile)
        # the exact class means and counts, NumPy arrays on the host (``to`` leaves them there)
        self._means: Optional[np.ndarray] = None
        self._counts: Optional[np.ndarray] = None
        self._masks_for: Optional[Tuple[float, float]] = None  # (p_a, p_w) of the core's masks
        super().__init__(encoder, w, b, p_a=p_a, p_w=p_w, clip=clip, detector=detector)
        self._clip_quantile = clip_quantile
        self.activation_sample: Optional[Tensor] = None
        self._scoring: Optional[Tuple] = None  # the float32 tensors of fused scoring

    #: ``preset="auto"``: :meth:`fit` holds out a share of its data and chooses ``p_a``,
    #: ``p_w`` and ``clip`` (:mod:`line_plugin.plugin.auto`)
    auto: bool = False
    #: seed of ``auto``'s synthetic outliers
    auto_seed: int = 0
    #: what ``auto`` chose, after :meth:`fit`
    auto_choice: Optional[AutoChoice] = None

    @classmethod
    def from_preset(
        cls, preset: str, encoder: Optional[Callable[[Tensor], Tensor]], w: Tensor, b: Tensor
    ) -> "LINe":
        """
        :param preset: the paper's settings: ``"cifar10"``, ``"cifar100"`` or ``"imagenet"``
            (:data:`line_plugin.PRESETS`), or ``"auto"``: chosen by :meth:`fit` from the
            training data (:mod:`line_plugin.plugin.auto`)
        :raises ValueError: for an unknown preset
        """
        if check_preset(preset) == AUTO:
            detector = cls(encoder, w, b)
            detector.auto = True
            return detector
        return cls(encoder, w, b, **preset_hyperparameters(preset))

    @classmethod
    def from_model(cls, model: nn.Module, preset: Optional[str] = None, **kwargs) -> "LINe":
        """
        A detector for a classifier split by :func:`line_plugin.split_model` (timm,
        torchvision and plain ``nn.Module`` classifiers).

        :param model: classifier; it is put in eval mode
        :param preset: ``"auto"`` (the default when no hyperparameter is given: :meth:`fit`
            holds out part of its data and chooses ``p_a``, ``p_w`` and ``clip``, see
            :mod:`line_plugin.plugin.auto`) or a paper preset (``"cifar10"``, ``"cifar100"``,
            ``"imagenet"``)
        :param kwargs: hyperparameters, overriding a paper preset's; without a preset, the
            others are the constructor's (the paper's CIFAR-10 setting)
        :raises ValueError: for an unknown preset, ``"auto"`` with hyperparameters, or if the
            model's logits cannot be reproduced from a linear head
        """
        # checked before the model is split
        preset = resolve_preset(preset, set(kwargs) & set(HYPERPARAMETERS))
        if preset == AUTO:
            detector = cls(*split_model(model), **kwargs)
            detector.auto = True
            return detector
        if preset is not None:
            kwargs = {**preset_hyperparameters(preset), **kwargs}
        encoder, weight, bias = split_model(model)
        return cls(encoder, weight, bias, **kwargs)

    @property
    def num_classes(self) -> int:
        """number of classes :math:`K`"""
        return self.weight.shape[0]

    @property
    def num_features(self) -> int:
        """feature width :math:`D`"""
        return self.weight.shape[1]

    @property
    def class_means(self) -> Optional[Tensor]:
        """the class means :math:`A` (:math:`K \\times D`, float64, on the CPU: :meth:`to` does
        not move them), a copy; ``None`` before fitting"""
        return None if self._means is None else torch.from_numpy(self._means.copy())

    @property
    def class_counts(self) -> Optional[Tensor]:
        """the number of training samples of each class (int64, on the CPU), a copy"""
        return None if self._counts is None else torch.from_numpy(self._counts.copy())

    # -- hyperparameters, checked when set ---------------------------------------------------

    @property
    def p_a(self) -> float:
        """fraction of the neurons pruned per class"""
        return self._p_a

    @p_a.setter
    def p_a(self, value: float) -> None:
        self._p_a = checks.fraction("p_a", value)
        self._derive_masks()

    @property
    def p_w(self) -> float:
        """fraction of the weights pruned per class"""
        return self._p_w

    @p_w.setter
    def p_w(self, value: float) -> None:
        self._p_w = checks.fraction("p_w", value)
        self._derive_masks()

    @property
    def clip(self) -> Optional[float]:
        """clipping threshold of the features; ``None``: no clipping. Setting it unsets
        ``clip_quantile``."""
        return self._clip

    @clip.setter
    def clip(self, value: Optional[float]) -> None:
        self._clip = checks.clip(value)
        self._clip_quantile = None

    @property
    def clip_quantile(self) -> Optional[float]:
        """if set, ``clip`` is this quantile of the ID training activations"""
        return self._clip_quantile

    @clip_quantile.setter
    def clip_quantile(self, value: Optional[float]) -> None:
        self._clip_quantile = _quantile(value)
        if self._clip_quantile is not None and self.activation_sample is not None:
            self._clip = self._fitted_clip()

    @property
    def hyperparameters(self) -> Dict[str, Optional[float]]:
        """the current ``p_a``, ``p_w``, ``clip`` (fitted, if by a quantile), ``clip_quantile``"""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    def _fitted_clip(self) -> float:
        q = self._clip_quantile
        clip = float(np.quantile(self.activation_sample.cpu().double().numpy(), q))
        if not clip > 0:
            raise ValueError(
                f"the {q} quantile of the training activations is {clip}, not a positive "
                "clipping threshold: choose a larger clip_quantile or an absolute clip"
            )
        return clip

    def set_hyperparameters(self, **kwargs) -> Self:
        """
        Set ``p_a``, ``p_w``, ``clip`` or ``clip_quantile``; a fitted detector re-derives its
        masks and clip without data.

        :return: self
        :raises ValueError: for unknown names or invalid values
        """
        quantile = kwargs.pop("clip_quantile", ...)
        self._deferred = True  # the masks of p_a and p_w derived once, after both are set
        try:
            super().set_hyperparameters(**kwargs)
        finally:
            self._deferred = False
        self._derive_masks()
        if quantile is not ...:
            self.clip_quantile = quantile
        return self

    _deferred = False

    def _derive_masks(self) -> None:
        """after a fit, the core's masks for the current ``p_a`` and ``p_w``, from the exact class
        means (the core, fitted on one sample per class equal to its mean, derives exactly the
        masks of a fit on the data)"""
        if self._means is None or self._deferred or self._masks_for == (self.p_a, self.p_w):
            return
        labels = torch.arange(self.num_classes)
        super().fit_features(torch.from_numpy(self._means), labels)
        self._masks_for = (self.p_a, self.p_w)

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, data_loader: DataLoader, progress: bool = True) -> Self:
        """
        :meth:`line_plugin.core.LINe.fit`, with a progress bar on a terminal; under
        :mod:`torch.distributed`, each process passes its own shard (a ``DistributedSampler``'s
        padding is dropped: every sample counts once).

        :param data_loader: yields batches ``(x, y)``; samples with ``y < 0`` are ignored
        :param progress: show a progress bar where stderr is a terminal
        :return: the fitted detector
        """
        if self.auto:  # hold out a share, fit on the rest, then choose (plugin.auto)
            self.auto = False
            try:
                fit_auto(self, data_loader, self.auto_seed, lambda s: self.fit(s, progress))
            finally:
                self.auto = True
            return self
        if self.encoder is None:
            raise ModelNotSetException()
        total = len(data_loader) if hasattr(data_loader, "__len__") else None
        batches = tqdm(
            distributed.unpadded(data_loader),
            desc="LINe fit",
            total=total,
            disable=None if progress else True,
        )
        device = self.device
        with torch.no_grad():
            return self.fit_batches(
                (self.encoder(x.to(device)).flatten(1), checks.labels(y, len(x)))
                for x, y in batches
            )

    def fit_features(self, x: Tensor, y: Tensor) -> Self:
        """
        :param x: training features, shape :math:`N \\times D`
        :param y: labels, shape :math:`N` (integers, or floats of integral value); samples with
            ``y < 0`` are ignored
        :return: the fitted detector, the same as :meth:`fit` on the inputs of ``x``
        :raises ValueError: on bad labels or features, if a class has no sample, or with
            ``preset="auto"``, which needs images (:func:`line_plugin.plugin.auto.choose`
            chooses on features)
        """
        if self.auto:
            raise ValueError(
                "preset 'auto' makes its outliers from held-out images: call fit(loader), or "
                "choose on features with line_plugin.plugin.auto.choose"
            )
        return self.fit_batches([(x, checks.labels(y, len(x)))])

    def fit_batches(self, batches: Iterable[Tuple[Tensor, Tensor]]) -> Self:
        """
        Fit on pairs of features and labels, each batch checked, added to float64 class sums a
        few rows at a time and to the sample of activations; under :mod:`torch.distributed`, the
        sums and samples of all processes. The masks, the sample and ``clip_quantile``'s clip
        are derived at once.

        :raises ValueError: on bad labels or features, if a class has no sample, or if the
            means overflow with the weights
        """
        k, d = self.num_classes, self.num_features
        sums = torch.zeros(k, d, dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.int64)
        sample = ActivationSample()
        with torch.no_grad():
            for x, y in batches:
                checks.features(x, d)
                y = checks.labels(y, len(x))
                known = is_known(y)
                x, y = x[known.to(x.device)], y[known].to("cpu", torch.int64)
                checks.label_range(y, k)
                sample.add(x)
                rows = max(1, CHUNK // d)
                for i in range(0, len(x), rows):
                    sums.index_add_(0, y[i : i + rows], x[i : i + rows].to("cpu", torch.float64))
                counts += torch.bincount(y, minlength=k)
        sums, counts = distributed.all_reduce(sums, counts)
        checks.counts(counts)
        means = sums / counts[:, None]
        checks.products(means, self.weight)
        self._means, self._counts, self._masks_for = means.numpy(), counts.numpy(), None
        self._derive_masks()
        sample.all_reduce()
        self.activation_sample = sample.values()
        if self._clip_quantile is not None:
            self._clip = self._fitted_clip()
        negative = float((self.activation_sample < 0).float().mean())
        if negative > SIGNED_WARNING and (self.p_a > 0 or self.p_w > 0):
            log.warning(
                f"{100 * negative:.0f} % of the training activations are negative: LINe's masks "
                "assume post-ReLU features, and the paper's fractions can hurt on signed features "
                "(ViT, ConvNeXt); preset='auto' (the default of from_model and line-ood fit) "
                "chooses p_a, p_w and clip from the training data"
            )
        return self

    # -- scoring -------------------------------------------------------------------------------

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """
        :param x: penultimate features, shape :math:`B \\times D`; float64 is computed in
            float64, other dtypes in float32
        :return: outlier scores, shape :math:`B`. With the default ``detector``, rows whose
            logits may overflow are scored in float64, rescaled, so every finite input gets a
            finite score (saturated at the largest value of the output dtype).
        :raises RequiresFittingException: before fitting
        :raises ValueError: on features of the wrong width, or with NaN or infinite values
        """
        scores = super().predict_features(x)
        if self.detector is EnergyBased.score and len(x):
            rows = overflow.suspects(self, x)
            if rows.any():
                limit = torch.finfo(scores.dtype).max
                wide = overflow.rescued_energy(self, x[rows]).clamp(-limit, limit)
                scores[rows] = wide.to(scores.dtype)
        return scores

    @torch.no_grad()
    def pruned_logits(self, x: Tensor) -> Tensor:
        """
        :meth:`line_plugin.core.LINe.pruned_logits`, checked; float32 features on CUDA are
        scored by one fused kernel where Triton works.

        :raises RequiresFittingException: before fitting
        :raises ValueError: on features of the wrong width, or with NaN or infinite values
        """
        if self.weight_threshold is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        checks.features(x, self.num_features)
        if self.p_w == 0 or x.dtype == torch.float64 or not fused.applies(x[:0].float()):
            return super().pruned_logits(x)
        w, b, threshold = self._fused_tensors(x.device)
        h = x.float() if self.clip is None else x.float().clamp(max=self.clip)
        pred = torch.addmm(b, h, w.T).argmax(dim=1)
        return fused.masked_logits(h, pred, w, b, threshold)

    def _fused_tensors(self, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
        """``W``, ``b`` and the thresholds (:math:`+\\infty` for pruned neurons), float32"""
        keep, threshold = self.activation_keep, self.weight_threshold
        cached = self._scoring
        if cached is None or cached[0] is not threshold or cached[1] != device:
            folded = threshold.masked_fill(~keep, np.inf).float()
            tensors = [t.to(device) for t in (self.weight.float(), self.bias.float(), folded)]
            self._scoring = cached = (threshold, device, tensors)
        return cached[2]

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> Dict:
        """
        :return: the fitted state (:func:`line_plugin.plugin.state.state_dict`), on the CPU
        :raises RequiresFittingException: before fitting
        """
        return state_files.state_dict(self)

    def load_state_dict(self, state: Dict) -> Self:
        """
        Restore a state of :meth:`state_dict`, or of version 0.1 or 0.2; exact.

        :raises ValueError: if the state is malformed or was fitted for another final layer
        """
        hp, means, counts, sample = state_files.checked_state(state, self.weight, self.bias)
        self._means = None  # the masks are derived once, from the restored means
        self.p_a, self.p_w, self.clip = hp["p_a"], hp["p_w"], hp["clip"]  # checked
        # the stored clip is the fitted one: kept as it is
        self._clip_quantile = _quantile(hp.get("clip_quantile"))
        self.activation_sample = sample
        self._means, self._counts, self._masks_for = means, counts, None
        self._derive_masks()
        return self

    def save(self, path: Union[str, os.PathLike], **metadata) -> None:
        """
        Save the fitted state and ``metadata`` (plain values) to ``path``, atomically
        (:func:`line_plugin.plugin.state.save_state`); after ``preset="auto"``, its choice
        (:meth:`AutoChoice.metadata <line_plugin.plugin.auto.AutoChoice.metadata>`) under
        ``"auto"``.
        """
        if self.auto_choice is not None:
            metadata = {"auto": self.auto_choice.metadata(), **metadata}
        state_files.save_state(path, self, **metadata)

    def load(self, path: Union[str, os.PathLike]) -> Self:
        """
        Load a state saved with :meth:`save`.

        :raises FileNotFoundError: if there is no such file
        :raises ValueError: if the file holds no LINe state for this detector's final layer
        """
        return self.load_state_dict(state_files.read_state(path)[0])


def _quantile(value: Optional[float]) -> Optional[float]:
    return None if value is None else checks.fraction("clip_quantile", value)
