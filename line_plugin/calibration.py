"""
A decision as well as a score: the threshold that turns LINe's outlier scores into an
in-distribution / out-of-distribution decision, calibrated on held-out ID images.

- :func:`calibration_split`: hold out a stratified, seeded share of the ID training images,
  disjoint from the images the detector is fitted on.
- :func:`threshold_at_tpr`: the threshold that keeps a given share (the ID true-positive rate)
  of the held-out ID scores.
- :func:`flag`: the decision, ``score > threshold``.

Scores follow :mod:`pytorch_ood`: higher means more likely out-of-distribution. The rule of
:func:`threshold_at_tpr`, exactly: with the :math:`n` held-out scores sorted,
:math:`s_{(1)} \\le \\dots \\le s_{(n)}`, and :math:`k = \\lceil \\mathrm{tpr} \\cdot n \\rceil`,
the threshold is :math:`s_{(k)}`, the smallest value :math:`t` such that at least
:math:`\\mathrm{tpr} \\cdot n` held-out scores are :math:`\\le t`. An image is flagged when its
score is strictly above the threshold, so at least that share of the held-out images is kept
(more when scores tie at the threshold). On fresh images of the same distribution the expected
share kept is :math:`k / (n + 1)`: with :math:`n` calibration images exchangeable with the new
in-distribution ones (same distribution, equally unseen by the backbone), the expected share
flagged is :math:`1 - k / (n + 1) \\le 1 - \\mathrm{tpr} + 1 / (n + 1)`. Held-out *training*
images are not exchangeable with new images when the backbone was trained on them.

NumPy is imported inside the functions, so that the command line parses its options (checked
by :func:`check_fraction` and :func:`check_tpr`) without it.
"""

import math
from typing import TYPE_CHECKING, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # imported where used: the command line parses its options without them
    import numpy as np
    from torch import Tensor

ArrayLike = Union["Tensor", "np.ndarray", Sequence[float]]

#: default share of the training images held out for the calibration (``--calibration``)
DEFAULT_FRACTION = 0.1
#: default ID true-positive rate of the threshold (``--tpr``)
DEFAULT_TPR = 0.95


def check_fraction(fraction: float) -> float:
    """
    :param fraction: share of the training images to hold out, in :math:`[0, 1)`; 0 disables
        the calibration
    :return: ``fraction`` as a float
    :raises ValueError: if it is not a finite number in :math:`[0, 1)`
    """
    value = _number(fraction, "calibration fraction")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"calibration fraction must be in [0, 1) (0 disables it), got {fraction!r}"
        )
    return value


def check_tpr(tpr: float) -> float:
    """
    :param tpr: share of held-out ID images the threshold keeps, in :math:`(0, 1]`
    :return: ``tpr`` as a float
    :raises ValueError: if it is not a finite number in :math:`(0, 1]`
    """
    value = _number(tpr, "true-positive rate")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"true-positive rate must be in (0, 1], got {tpr!r}")
    return value


def check_threshold(threshold: float) -> float:
    """
    :param threshold: a decision threshold given by the user
    :return: ``threshold`` as a float
    :raises ValueError: if it is not a finite number
    """
    return _number(threshold, "threshold")


def calibration_split(
    labels: Optional[ArrayLike], size: int, fraction: float, seed: int = 0
) -> Tuple["np.ndarray", "np.ndarray"]:
    """
    Split ``size`` positions into fit and calibration positions, stratified by class.

    Each class gives :math:`\\lfloor f \\cdot n_c \\rfloor` or :math:`\\lceil f \\cdot n_c \\rceil`
    of its :math:`n_c` positions: the floor, plus one for the classes with the largest remainders
    until :math:`\\mathrm{round}(f \\cdot N)` are held out in all, where that is possible; every
    class keeps at least one position for the fit. Which positions of a class are held out is a
    seeded random choice. Without labels the choice is plain random.

    :param labels: class label of each position (length ``size``), or ``None``
    :param size: number of positions
    :param fraction: share to hold out, see :func:`check_fraction`
    :param seed: random seed; the same seed gives the same split
    :return: ``fit, calibration``: disjoint sorted positions covering ``range(size)``
    :raises ValueError: for a bad fraction, labels of another length, or a split that leaves
        no calibration image or no fit image
    """
    import numpy as np

    fraction = check_fraction(fraction)
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = np.zeros(size, dtype=np.int64)
    labels = _array(labels).reshape(-1)
    if len(labels) != size:
        raise ValueError(f"got {len(labels)} labels for {size} positions")
    classes, counts = np.unique(labels, return_counts=True)
    quota = fraction * counts
    take = np.minimum(np.floor(quota).astype(np.int64), counts - 1)
    missing = int(round(fraction * size)) - int(take.sum())
    order = np.lexsort((np.arange(len(classes)), -(quota - take)))  # largest remainder first
    for c in order:
        if missing <= 0:
            break
        if quota[c] > take[c] and take[c] < counts[c] - 1:
            take[c] += 1
            missing -= 1
    held = [
        rng.permutation(np.flatnonzero(labels == c))[:t] for c, t in zip(classes, take.tolist())
    ]
    calibration = np.sort(np.concatenate(held + [np.zeros(0, dtype=np.int64)]))
    fit = np.setdiff1d(np.arange(size), calibration)
    if fraction > 0 and len(calibration) == 0:
        raise ValueError(
            f"calibration fraction {fraction:g} of {size} training images holds out none; "
            "use more images or a larger fraction"
        )
    if size and len(fit) == 0:
        raise ValueError(f"calibration fraction {fraction:g} leaves no image to fit on")
    return fit, calibration


def threshold_at_tpr(scores: ArrayLike, tpr: float = DEFAULT_TPR) -> float:
    """
    The threshold that keeps at least ``tpr`` of the ID ``scores``: the :math:`k`-th smallest
    score, :math:`k = \\lceil \\mathrm{tpr} \\cdot n \\rceil` (the product rounded to 9 decimals
    first, so that ``0.7 * 10`` counts as 7).

    :param scores: outlier scores of held-out ID images, :math:`n`, higher = more OOD
    :param tpr: share of them to keep, see :func:`check_tpr`
    :return: the threshold; :func:`flag` marks scores strictly above it
    :raises ValueError: for a bad rate, no scores, or non-finite scores
    """
    import numpy as np

    tpr = check_tpr(tpr)
    values = _scores(scores)
    if values.size == 0:
        raise ValueError("cannot set a threshold on no scores")
    if not np.isfinite(values).all():
        raise ValueError("cannot set a threshold on non-finite scores")
    k = max(1, math.ceil(round(tpr * values.size, 9)))
    return float(np.partition(values, k - 1)[k - 1])


def flag(scores: ArrayLike, threshold: float) -> "np.ndarray":
    """
    :param scores: outlier scores, :math:`n`, higher = more OOD
    :param threshold: from :func:`threshold_at_tpr` or given by the user
    :return: boolean array, :math:`n`: ``True`` where the score is above the threshold (OOD)
    :raises ValueError: if the threshold is not a finite number
    """
    return _scores(scores) > check_threshold(threshold)


def _array(values: ArrayLike) -> "np.ndarray":
    """a tensor (on any device) or array-like as a NumPy array"""
    import numpy as np

    if hasattr(values, "detach"):  # a torch.Tensor
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    return np.asarray(values)


def _scores(scores: ArrayLike) -> "np.ndarray":
    import numpy as np

    return _array(scores).astype(np.float64).reshape(-1)


def _number(value: float, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number
