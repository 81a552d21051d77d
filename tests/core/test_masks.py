"""
Steps 2 and 3: the core's activation masks are NumPy's linear quantile with a strict ``>``, and its
weight thresholds give exactly the literal :math:`K \\times D` weight masks of every class, ties
and dead neurons included, by the bracketed selection or, where a bracket misses, all products.
"""

from unittest import mock

import numpy as np
import pytest
import torch

import line_plugin.core.line as core_module
from line_plugin.core import LINe


def head(num_classes, num_features, seed, levels=None, zero_scale=0.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((num_classes, num_features)) * 0.01
    if levels:  # quantised weights: many exact ties
        w = np.round(w * levels) / levels
    w = w.astype(np.float32).astype(np.float64)
    means = np.abs(rng.standard_normal((num_classes, num_features)))
    means[rng.random(means.shape) < zero_scale] = 0  # dead neurons: zero contributions
    return w, means


def fitted(w, means, p_a, p_w):
    """a core detector fitted on one sample per class, its mean; and its contributions"""
    det = LINe(None, torch.from_numpy(w).float(), p_a=p_a, p_w=p_w)
    det.fit_features(torch.from_numpy(means), torch.arange(len(w)))
    return det, w * means


def test_activation_mask():
    w, means = head(6, 50, 1)
    for p in (0.1, 0.5, 0.9, 1.0):
        det, c = fitted(w, means, p, 0.0)
        expected = c > np.quantile(c, p, axis=1, keepdims=True)
        np.testing.assert_array_equal(det.activation_keep.numpy(), expected)
    det, _ = fitted(w, means, 0.0, 0.0)
    assert det.activation_keep.all()  # a fraction of 0 keeps even the smallest contribution


CASES = {"plain": {}, "ties": {"levels": 1000}, "heavy ties": {"levels": 30}}
CASES["dead neurons"] = {"zero_scale": 0.3}
CASES["dead neurons, heavy ties"] = {"zero_scale": 0.3, "levels": 30}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("p", [1e-6, 0.1, 0.5, 0.9, 1.0])
def test_weight_masks_are_the_definition(case, p):
    # every class's K x D weight mask, literally, against the thresholds
    w, means = head(60, 400, 2, **CASES[case])
    det, c = fitted(w, means, 0.0, p)
    thresholds = det.weight_threshold.double().numpy()
    for label in range(len(w)):
        products = np.abs(c[label])[None, :] * w
        expected = products > np.quantile(products, p)
        np.testing.assert_array_equal(w > thresholds[label], expected, err_msg=str(label))
        # a threshold is the largest pruned weight of its column, or -inf
        pruned = np.where(expected, -np.inf, w).max(axis=0)
        np.testing.assert_array_equal(thresholds[label], pruned)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (2, 3)])
@pytest.mark.parametrize("p", [1e-6, 0.3, 0.5, 1.0])
def test_tiny_heads(shape, p):
    w, means = head(*shape, seed=3)
    det, c = fitted(w, means, p, p)
    thresholds = det.weight_threshold.double().numpy()
    for label in range(len(w)):
        products = np.abs(c[label])[None, :] * w
        np.testing.assert_array_equal(w > thresholds[label], products > np.quantile(products, p))
        np.testing.assert_array_equal(
            det.activation_keep[label].numpy(), c[label] > np.quantile(c[label], p)
        )


def _partition_sizes(case, p):
    sizes = []
    original = np.partition

    def spy(a, kth, **kw):
        sizes.append(np.size(a))
        return original(a, kth, **kw)

    w, means = head(60, 400, 2, **CASES[case])
    with mock.patch.object(core_module.np, "partition", spy):
        fitted(w, means, 0.0, p)
    return w.size, sizes[1::2]  # the sample's partition, then the bracket's, per class


def test_the_bracket_selects_among_few_products():
    size, selected = _partition_sizes("plain", 0.3)
    assert len(selected) == 60 and max(selected) < size / 4


def test_a_missed_bracket_selects_among_all_products():
    # dead neurons make a block of tied zero products; where the median falls in it, the
    # bracket's bounds tie it and miss: all K x D products (the masks are tested above)
    size, selected = _partition_sizes("dead neurons", 0.5)
    assert selected == [size] * 60
