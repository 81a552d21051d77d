"""
The detectors of the comparison: pytorch-ood's post-hoc baselines and LINe, all working on
cached penultimate features (an identity encoder, the linear head as logits model, features as
1 x 1 feature maps for ReAct, ASH and SCALE); fitting, scoring and tuning them on features.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from pytorch_ood.api import Detector, FeaturesDetector
from pytorch_ood.detector import (
    ASH,
    DICE,
    KNN,
    SCALE,
    EnergyBased,
    Mahalanobis,
    MaxSoftmax,
    ReAct,
    ViM,
)
from pytorch_ood.utils import GridSearch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


class _AsMaps(nn.Module):
    # B x D features as B x D x 1 x 1 feature maps, for ReAct, ASH and SCALE
    def forward(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], -1, 1, 1)


class _Head(nn.Module):
    # the linear head on (flattened) features
    def __init__(self, w: Tensor, b: Tensor):
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(b)
        self.requires_grad_(False)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc(z.flatten(1))


def _knn(k: int = 50) -> Detector:
    try:
        return KNN(nn.Identity(), k=k)
    except ImportError as e:  # pytorch-ood's KNN imports scikit-learn when it is made
        raise ImportError(
            "the KNN baseline needs scikit-learn: pip install 'line-plugin[bench]'"
        ) from e


def _line(w: Tensor, b: Tensor, preset: Optional[str] = "cifar10", **kwargs) -> Detector:
    from .. import LINe

    if preset is not None:
        return LINe.from_preset(preset, nn.Identity(), w, b)
    return LINe(nn.Identity(), w, b, **kwargs)


#: pytorch-ood's baselines of the comparison, in the order of the tables
BASELINES = ("MSP", "Energy", "ReAct", "DICE", "ASH", "SCALE", "ViM", "KNN", "Mahalanobis")


def detector_names(line: bool = True) -> List[str]:
    """
    :param line: include ``"LINe"``
    :return: the names of :func:`make_detectors`, in its order
    """
    return list(BASELINES) + (["LINe"] if line else [])


def check_detector_names(names: Sequence[str], line: bool = True) -> None:
    """
    The one check of detector names, made before any feature is extracted.

    :param names: names asked for
    :param line: whether LINe is among the detectors
    :raises ValueError: naming the unknown names and listing the known ones
    """
    known = detector_names(line)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown detectors {unknown}; known: {', '.join(known)}")


def make_detectors(
    w: Tensor, b: Tensor, line: bool = True, names: Optional[Sequence[str]] = None
) -> Dict[str, Detector]:
    """
    The detectors of the comparison, at their default or paper settings, working on features
    (identity encoder; the linear head as logits model). ``"(tuned)"`` copies are made by
    :func:`~line_plugin.evaluation.compare_detectors` for those with a ``hyperparameter_space``.

    :param w: head weight, :math:`K \\times D`
    :param b: head bias, :math:`K`
    :param line: include LINe (paper preset ``cifar10``: ``p_a = p_w = 0.9``, ``clip = 1``)
    :param names: the detectors to build (default: all); only these are built
    :return: name -> unfitted detector, named and ordered as :func:`detector_names`
    :raises ValueError: on an unknown name
    :raises ImportError: for KNN without scikit-learn (the ``bench`` extra)
    """
    if names is not None:
        check_detector_names(names, line)
    head = _Head(w, b)
    d = w.shape[1]
    factories: Dict[str, Callable[[], Detector]] = {
        "MSP": lambda: MaxSoftmax(head),
        "Energy": lambda: EnergyBased(head),
        "ReAct": lambda: ReAct(_AsMaps(), head, percentile=0.9),
        "DICE": lambda: DICE(nn.Identity(), w, b, p=0.9),
        "ASH": lambda: ASH(_AsMaps(), head, variant="ash-s", percentile=0.65),
        "SCALE": lambda: SCALE(_AsMaps(), head, percentile=0.65),
        "ViM": lambda: ViM(nn.Identity(), d=max(1, d // 2), w=w, b=b),
        "KNN": lambda: _knn(50),
        "Mahalanobis": lambda: Mahalanobis(nn.Identity()),
    }
    if line:
        factories["LINe"] = lambda: _line(w, b)
    return {name: make() for name, make in factories.items() if names is None or name in names}


def space_for(detector: Detector, num_features: int, num_fit: int) -> Optional[Dict[str, list]]:
    """
    The detector's ``hyperparameter_space``, less the values its data cannot take (ViM: ``d``
    below the feature width; KNN: ``k`` up to the number of fit samples).

    :param detector: the detector
    :param num_features: feature width :math:`D`
    :param num_fit: number of fit samples
    :return: the search space, or ``None`` if the detector has none
    """
    space = dict(getattr(detector, "hyperparameter_space", None) or {})
    if "d" in space:  # ViM: the principal subspace must be smaller than the features
        space["d"] = [d for d in space["d"] if d < num_features] or [max(1, num_features // 2)]
    if "k" in space:  # KNN: at most as many neighbours as fit samples
        space["k"] = [k for k in space["k"] if k <= num_fit] or [num_fit]
    return space or None


def fit_detector(detector: Detector, z: Tensor, y: Tensor, batch_size: int = 2048) -> Detector:
    """
    Fit a feature-level detector (see :func:`make_detectors`) on ID features.

    :return: the detector
    """
    if isinstance(detector, ReAct):
        detector.fit_feature_maps(z[:, :, None, None], y)
    elif isinstance(detector, FeaturesDetector):
        detector.fit_features(z, y)
    elif detector.requires_fit:
        detector.fit(DataLoader(TensorDataset(z, y), batch_size=batch_size))
    return detector


@torch.no_grad()
def predict(detector: Detector, z: Tensor, batch_size: int = 4096) -> Tensor:
    """
    :param detector: a feature-level detector
    :param z: features :math:`N \\times D`
    :return: outlier scores :math:`N`, on the CPU
    """
    return torch.cat([detector.predict(chunk).flatten().cpu() for chunk in z.split(batch_size)])


def tune(
    detector: Detector,
    fit: Tuple[Tensor, Tensor],
    val: Tuple[Tensor, Tensor],
    space: Dict[str, list],
    batch_size: int = 2048,
) -> GridSearch:
    """
    :class:`pytorch_ood.utils.GridSearch` (AUROC) on validation features; leaves ``detector``
    fitted with the best hyperparameters.

    :param detector: a feature-level detector
    :param fit: ID fit features and labels
    :param val: validation features and labels (OOD labelled ``< 0``)
    :param space: the search space
    :return: the finished search (``best_params_``, ``best_score_``, ``results_``)
    """
    fit_loader = DataLoader(TensorDataset(*fit), batch_size=batch_size)
    val_loader = DataLoader(TensorDataset(*val), batch_size=batch_size)
    search = GridSearch(detector, fit_loader, val_loader, hyperparameter_space=space)
    search.run()
    return search


def ablation_detectors(w: Tensor, b: Tensor) -> Dict[str, Detector]:
    """
    LINe with each of its three parts (clipping at 1, activation pruning 0.9, weight pruning 0.9:
    the CIFAR-10 preset) on or off; all off is the energy score.

    :return: name (e.g. ``"clip + A + W"``) -> unfitted detector
    """
    out = {}
    for clip in (False, True):
        for p_a in (False, True):
            for p_w in (False, True):
                parts = [s for s, on in (("clip", clip), ("A", p_a), ("W", p_w)) if on]
                name = " + ".join(parts) or "none (energy)"
                out[name] = _line(
                    w, b, None, p_a=0.9 * p_a, p_w=0.9 * p_w, clip=1.0 if clip else None
                )
    return out
