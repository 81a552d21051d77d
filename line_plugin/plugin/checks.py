"""
The input checks of ``line_plugin.LINe``: every bad input gets a one-line error naming the
problem, before the upstream detector (which, like its pytorch-ood neighbours, lets NaN through
as NaN) sees it.
"""

from typing import Optional

import numpy as np
import torch
from torch import Tensor


def fraction(name: str, value: float) -> float:
    """:return: ``value`` as a float in :math:`[0, 1]`
    :raises ValueError: for anything else (hinting at fractions given in percent)"""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    if not 0 <= value <= 1:  # NaN included
        percent = f"; use {value / 100:g} instead of {value:g}" if 1 < value <= 100 else ""
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value}{percent}")
    return float(value)


def clip(value: Optional[float]) -> Optional[float]:
    """:return: a positive finite clipping threshold, or ``None``
    :raises ValueError: for anything else"""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
        raise ValueError(f"clip must be a positive finite number or None, got {value!r}")
    return float(value)


def head(w: Tensor, b: Optional[Tensor]) -> None:
    """:raises ValueError: unless ``w`` is a finite K x D tensor and ``b`` ``None`` or finite K"""
    if not isinstance(w, Tensor) or w.dim() != 2 or 0 in w.shape:
        raise ValueError(f"w must be a non-empty K x D tensor, got {getattr(w, 'shape', w)}")
    if b is not None and (not isinstance(b, Tensor) or b.shape != w.shape[:1]):
        got = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"b must have shape K = ({w.shape[0]},) to match w, got {got}")
    for name, t in (("w", w), ("b", b)):
        if t is not None and not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")


def features(x: Tensor, num_features: int) -> None:
    """:raises ValueError: unless ``x`` is a finite floating-point B x D tensor"""
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x)
        raise ValueError(f"features must have shape B x D, floating point; got {got}")
    if x.shape[1] != num_features:
        raise ValueError(
            f"features have width {x.shape[1]}, but the final layer expects {num_features}"
        )
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")


def labels(y, n: int) -> Tensor:
    """
    :return: ``y`` as a tensor; floats of integral value (as pytorch-ood's tests pass) as int64
    :raises ValueError: on another shape than ``(n,)``, or labels that are no integers
    """
    y = torch.as_tensor(y)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the features, got {y.shape}")
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"labels must be integers, got {y.dtype}")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):  # NaN and fractions
            raise ValueError("labels must be integers; got floats with a fractional part")
        y = y.long()
    return y


def label_range(y: Tensor, num_classes: int) -> None:
    """:raises ValueError: if a label is ``num_classes`` or more"""
    if y.numel() and int(y.max()) >= num_classes:
        raise ValueError(
            f"label {int(y.max())} is out of range for a final layer of {num_classes} classes"
        )


def counts(counts: Tensor) -> None:
    """:raises ValueError: if no class, or not every class, has a training sample"""
    missing = (counts == 0).nonzero().flatten().tolist()
    if len(missing) == len(counts):
        raise ValueError("no in-distribution sample (label >= 0) to fit on")
    if missing:
        raise ValueError(
            f"no training sample for class(es) {str(missing[:20])[1:-1]}: LINe needs the mean "
            f"features of every one of the {len(counts)} classes"
        )


def products(means: Tensor, weight: Tensor) -> None:
    """:raises ValueError: if the class means times the weights can overflow float64"""
    bound = float(means.abs().max()) * float(weight.abs().max())
    if not np.isfinite(bound * max(1.0, float(weight.abs().max()))):
        raise ValueError(
            "the class means times the final-layer weights overflow float64: scale the "
            "features down"
        )
