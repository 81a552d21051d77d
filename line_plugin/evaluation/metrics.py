"""
Metrics: the FPR95 of the LINe, DICE and ReAct papers (ID positive) beside pytorch-ood's.
"""

from typing import Dict

import numpy as np
import torch
from torch import Tensor


def fpr_at_id_tpr(scores: Tensor, labels: Tensor, tpr: float = 0.95) -> float:
    """
    The FPR95 of the LINe, DICE and ReAct papers: the share of OOD samples accepted as ID when a
    share ``tpr`` of the ID samples is kept (ID is the positive class). This is not pytorch-ood's
    ``FPR95TPR``, where OOD is the positive class.

    Computed as their evaluation code does (``fpr_and_fdr_at_recall`` of the Outlier Exposure
    code): over the thresholds at the distinct scores, take the one whose ID recall is nearest
    ``tpr`` (on a tie, the higher recall) and, of several with that recall, the most permissive,
    which also accepts the OOD samples scored below the next ID sample.

    :param scores: outlier scores (higher: more OOD), shape :math:`N`
    :param labels: labels, shape :math:`N`; labels :math:`< 0` mark OOD samples
    :param tpr: fraction of ID samples kept, in :math:`(0, 1]`
    :return: the false positive rate, in :math:`[0, 1]`
    :raises ValueError: without ID or OOD samples, on non-finite scores or a bad ``tpr``
    """
    scores = torch.as_tensor(scores).detach().double().flatten().cpu()
    labels = torch.as_tensor(labels).flatten().cpu()
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ")
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores must be finite")
    ood = (labels < 0).numpy()
    if ood.all() or not ood.any():
        raise ValueError("need both ID (label >= 0) and OOD (label < 0) samples")
    # ID-ness in decreasing order; one threshold at the last position of each distinct value
    order = np.argsort(-scores.numpy(), kind="mergesort")[::-1]
    value, is_id = -scores.numpy()[order], (~ood)[order].astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(value)), len(value) - 1]
    tps = np.cumsum(is_id)[ends]
    fps = 1 + ends - tps
    # from the first threshold that keeps every ID sample back to the strictest one
    last = int(np.searchsorted(tps, tps[-1]))
    recall = np.r_[tps[last::-1] / tps[-1], 1]
    fps = np.r_[fps[last::-1], 0]
    return float(fps[np.argmin(np.abs(recall - tpr))] / ood.sum())


def metrics(scores: Tensor, labels: Tensor) -> Dict[str, float]:
    """
    :param scores: outlier scores, shape :math:`N`
    :param labels: labels, shape :math:`N`; labels :math:`< 0` mark OOD samples
    :return: pytorch-ood's ``AUROC``, ``AUPR-IN``, ``AUPR-OUT``, ``FPR95TPR`` and the papers'
        ``FPR95`` (:func:`fpr_at_id_tpr`)
    """
    from pytorch_ood.metrics import OODMetrics

    result = OODMetrics().update(scores, labels).compute()
    out = {k: float(result[k]) for k in ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")}
    out["FPR95"] = fpr_at_id_tpr(scores, labels)
    return out
