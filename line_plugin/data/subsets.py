"""
Fixed, class-balanced subsets of a dataset (:func:`subset`), chosen from its labels read without
loading its images (:func:`labels_of`).
"""

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset


def labels_of(dataset: Dataset) -> Optional[np.ndarray]:
    """
    Labels of a dataset without loading its images: its ``targets`` or ``labels`` attribute,
    followed through :class:`torch.utils.data.Subset`.

    :param dataset: the dataset
    :return: integer array of length ``len(dataset)``, or ``None`` if unknown
    """
    if isinstance(dataset, Subset):
        parent = labels_of(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices, dtype=np.int64)]
    for name in ("targets", "labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
            if labels.ndim == 1 and len(labels) == len(dataset):
                return labels.astype(np.int64)
    return None


def subset_indices(labels: Optional[np.ndarray], size: int, n: int, seed: int = 0) -> np.ndarray:
    """
    Deterministic, class-balanced choice of ``n`` of ``size`` positions: the classes take turns
    (in a seeded order), each giving its next position from a seeded permutation, so class counts
    differ by at most one while every class has positions left.

    :param labels: labels of the positions, or ``None`` for a plain random choice
    :param size: number of positions
    :param n: number to choose (all if ``n >= size``)
    :param seed: random seed
    :return: the chosen positions, sorted
    """
    rng = np.random.default_rng(seed)
    n = min(int(n), size)
    if labels is None or len(np.unique(labels)) < 2:
        return np.sort(rng.permutation(size)[:n])
    classes = rng.permutation(np.unique(labels))
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    # rank of each position within its class, then interleave by rank
    order = np.concatenate(pools)
    rank = np.concatenate([np.arange(len(p)) for p in pools])
    turn = np.concatenate([np.full(len(p), k) for k, p in enumerate(pools)])
    chosen = order[np.lexsort((turn, rank))][:n]
    return np.sort(chosen)


def subset(dataset: Dataset, n: int, seed: int = 0, exclude: Optional[Sequence[int]] = None):
    """
    A fixed subset of ``n`` items, stratified by class when the labels are known
    (see :func:`labels_of` and :func:`subset_indices`).

    :param dataset: the dataset
    :param n: number of items (all if ``n`` exceeds the dataset)
    :param seed: random seed; the same seed gives the same subset
    :param exclude: positions not to choose (e.g. those of another subset)
    :return: a :class:`torch.utils.data.Subset`
    """
    labels = labels_of(dataset)
    pool = np.arange(len(dataset))
    if exclude is not None:
        pool = np.setdiff1d(pool, np.asarray(exclude, dtype=np.int64))
    chosen = subset_indices(None if labels is None else labels[pool], len(pool), n, seed)
    return Subset(dataset, pool[chosen].tolist())
