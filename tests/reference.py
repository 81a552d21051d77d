"""
A literal, per-sample float64 transcription of LINe as the authors' code computes it, kept
independent of the package: NumPy only, the dense K x K x D view (one K x D mask per sample).
``benchmarks/speed.py`` times it against the package.
"""

from typing import Optional, Tuple

import numpy as np


def reference_line_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    features: np.ndarray,
    p_a: float,
    p_w: float,
    clip: Optional[float],
) -> np.ndarray:
    """outlier scores (-logsumexp of the pruned logits), one per row of ``features``"""
    train_features = np.asarray(train_features, dtype=np.float64)
    num_classes = np.shape(weight)[0]
    known = train_labels >= 0
    means = np.stack(
        [train_features[known & (train_labels == c)].mean(axis=0) for c in range(num_classes)]
    )
    return reference_scores(means, weight, bias, features, p_a, p_w, clip)


def reference_scores(
    class_means: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    features: np.ndarray,
    p_a: float,
    p_w: float,
    clip: Optional[float],
) -> np.ndarray:
    """:func:`reference_line_scores` from the class means of the training features"""
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    contrib = weight * np.asarray(class_means, dtype=np.float64)
    scores = []
    for a in np.asarray(features, dtype=np.float64):
        h = a if clip is None else np.minimum(a, clip)
        label = int(np.argmax(weight @ h + bias))
        if p_a == 0:
            neuron_mask = np.ones_like(h)
        else:
            neuron_mask = contrib[label] > np.quantile(contrib[label], p_a)
        products = np.abs(contrib[label])[None, :] * weight
        if p_w == 0:
            weight_mask = np.ones_like(weight)
        else:
            weight_mask = products > np.quantile(products, p_w)
        logits = (weight * weight_mask) @ (h * neuron_mask) + bias
        top = logits.max()
        scores.append(-(top + np.log(np.exp(logits - top).sum())))
    return np.array(scores)


def reference_masks(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    weight: np.ndarray,
    p_a: float,
    p_w: float,
) -> Tuple[np.ndarray, np.ndarray]:
    """the masks of each class as the authors' code derives them: activation masks (K x D) and
    weight masks (K x K x D), a fraction of 0 keeping everything"""
    train_features = np.asarray(train_features, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    known = train_labels >= 0
    means = np.stack(
        [train_features[known & (train_labels == c)].mean(axis=0) for c in range(len(weight))]
    )
    contrib = weight * means
    keep = np.ones(contrib.shape, dtype=bool)
    if p_a > 0:
        keep = contrib > np.quantile(contrib, p_a, axis=1, keepdims=True)
    masks = np.ones((len(weight),) + weight.shape, dtype=bool)
    if p_w > 0:
        for label, row in enumerate(np.abs(contrib)):
            products = row[None, :] * weight
            masks[label] = products > np.quantile(products, p_w)
    return keep, masks
