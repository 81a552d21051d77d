"""
``line_plugin.LINe``: the core detector with the conveniences that do not belong upstream.

..  autoclass:: line_plugin.LINe
    :members: from_model, from_preset, fit, clip_quantile, save, load
    :show-inheritance:
"""

import logging
import os
from typing import Callable, Dict, Optional, Union

import numpy as np
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from typing_extensions import Self

from ..adapter import split_model
from ..core import line as core
from . import fused
from .auto import AUTO, HYPERPARAMETERS, AutoChoice, fit_auto
from .presets import check_preset, preset_hyperparameters, resolve_preset
from .sample import ActivationSample
from .state import read_state, save_state

log = logging.getLogger(__name__)

#: share of negative training activations above which fitting warns that features are signed
SIGNED_WARNING = 0.05


class LINe(core.LINe):
    """
    :class:`line_plugin.core.LINe` (the detector as pytorch-ood holds it), plus:

    - :meth:`from_model` (any timm, torchvision or plain classifier, split by
      :func:`line_plugin.split_model`) and :meth:`from_preset` (the paper's settings);
    - a progress bar in :meth:`fit`, shown only on a terminal;
    - ``clip_quantile``: the clip fitted as a quantile of the ID training activations (as
      ReAct does), from a bounded sample of them, and a warning when the features are signed;
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
        """
        super().__init__(encoder, w, b, p_a=p_a, p_w=p_w, clip=clip, detector=detector)
        self._clip_quantile = _quantile(clip_quantile)
        self.activation_sample: Optional[Tensor] = None

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

    # -- clip_quantile ---------------------------------------------------------------------------

    @property
    def clip(self) -> Optional[float]:
        """clipping threshold of the features; ``None``: no clipping. Setting it unsets
        ``clip_quantile``."""
        return self._clip

    @clip.setter
    def clip(self, value: Optional[float]) -> None:
        self._clip = core._clip(value)
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

    def _fitted_clip(self) -> float:
        q = self._clip_quantile
        clip = float(np.quantile(self.activation_sample.double().cpu().numpy(), q))
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
        super().set_hyperparameters(**kwargs)
        if quantile is not ...:
            self.clip_quantile = quantile
        return self

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, data_loader: DataLoader, progress: bool = True) -> Self:
        """
        :meth:`line_plugin.core.LINe.fit`, with a progress bar on a terminal.

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
        batches = tqdm(data_loader, desc="LINe fit", disable=None if progress else True)
        return super().fit(batches)

    def fit_features(self, x: Tensor, y: Tensor) -> Self:
        """:meth:`line_plugin.core.LINe.fit_features`; not with ``preset="auto"``, which needs
        images (:func:`line_plugin.plugin.auto.choose` chooses on features)"""
        if self.auto:
            raise ValueError(
                "preset 'auto' makes its outliers from held-out images: call fit(loader), or "
                "choose on features with line_plugin.plugin.auto.choose"
            )
        return super().fit_features(x, y)

    def _start_fit(self) -> None:
        super()._start_fit()
        self._sample = ActivationSample()

    def _accumulate(self, x: Tensor, y: Tensor) -> None:
        super()._accumulate(x, y)
        self._sample.add(x)

    def _finish_fit(self) -> Self:
        sample = self._sample
        del self._sample
        super()._finish_fit()
        sample.all_reduce()
        self.activation_sample = sample.values().to(self.weight.device)
        if self._clip_quantile is not None:
            self._clip = self._fitted_clip()
        negative = float((self.activation_sample < 0).float().mean())
        if negative > SIGNED_WARNING and (self.p_a > 0 or self.p_w > 0):
            log.warning(
                f"{100 * negative:.0f} % of the training activations are negative: LINe's masks "
                "assume post-ReLU features, and the paper's fractions can hurt on signed features "
                "(ViT, ConvNeXt); tune p_a, p_w and clip on a validation split (see the README)"
            )
        return self

    # -- scoring -------------------------------------------------------------------------------

    def _masked_logits(self, h: Tensor, pred: Tensor, w: Tensor, b: Tensor, threshold: Tensor):
        if fused.applies(h):
            return fused.masked_logits(h, pred, w, b, threshold)
        return super()._masked_logits(h, pred, w, b, threshold)

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> Dict:
        """
        The core's state plus ``clip_quantile`` and the activation sample.

        :raises RequiresFittingException: before fitting
        """
        state = super().state_dict()
        state["hyperparameters"]["clip_quantile"] = self._clip_quantile
        state["activation_sample"] = self.activation_sample.cpu()
        return state

    def load_state_dict(self, state: Dict) -> Self:
        """
        Restore a state of :meth:`state_dict` (or of the core detector); exact.

        :raises ValueError: if the state is malformed or was fitted for another final layer
        """
        super().load_state_dict(state)
        self._clip_quantile = _quantile(state["hyperparameters"].get("clip_quantile"))
        sample = state.get("activation_sample")
        self.activation_sample = None if sample is None else sample.to(self.weight.device)
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
        save_state(path, self, **metadata)

    def load(self, path: Union[str, os.PathLike]) -> Self:
        """
        Load a state saved with :meth:`save`.

        :raises FileNotFoundError: if there is no such file
        :raises ValueError: if the file holds no LINe state for this detector's final layer
        """
        return self.load_state_dict(read_state(path)[0])


def _quantile(value: Optional[float]) -> Optional[float]:
    return None if value is None else core._fraction("clip_quantile", value)
