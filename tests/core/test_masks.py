"""
Steps 2 and 3: the core's activation masks are NumPy's linear quantile with a strict ``>``, its
weight thresholds are the definition, and the plugin's fast selection equals the core's exact
selection over all K x D products bit for bit, ties and dead neurons included.
"""

import numpy as np
import pytest
import torch

from line_plugin import LINe as PluginLINe
from line_plugin.core import LINe
from line_plugin.plugin.selection import WeightThreshold


def head(num_classes, num_features, seed, levels=None, zero_scale=0.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((num_classes, num_features)) * 0.01
    if levels:  # quantised weights: many exact ties
        w = np.round(w * levels) / levels
    w = w.astype(np.float32).astype(np.float64)
    means = np.abs(rng.standard_normal((num_classes, num_features)))
    means[rng.random(means.shape) < zero_scale] = 0  # dead neurons: zero contributions
    return w, w * means


def fitted(w, contrib, p_a, p_w):
    """a core detector whose class means make ``contrib`` its contributions"""
    det = LINe(None, torch.from_numpy(w), p_a=p_a, p_w=p_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(w != 0, contrib / w, 0.0)
    k = len(w)
    det.fit_features(torch.from_numpy(means), torch.arange(k))
    return det, w * det.class_means.numpy()


def test_activation_mask():
    w, c = head(6, 50, 1)
    for p in (0.1, 0.5, 0.9):
        det, c = fitted(w, c, p, 0.0)
        expected = c > np.quantile(c, p, axis=1, keepdims=True)
        np.testing.assert_array_equal(det.activation_keep.numpy(), expected)
    det.p_a = 0
    assert det.activation_keep.all()


@pytest.mark.parametrize("kw", [{}, {"levels": 30}, {"zero_scale": 0.3}])
def test_weight_mask_is_the_definition(kw):
    # every class's K x D weight mask, literally, against the thresholds
    w, c = head(40, 2000, 4, **kw)
    det, c = fitted(w, c, 0.0, 0.3)
    thresholds = det.weight_threshold.numpy()
    for label in (0, 17, 39):
        products = np.abs(c[label])[None, :] * w
        expected = products > np.quantile(products, 0.3)
        np.testing.assert_array_equal(w > thresholds[label][None, :], expected)
    det.p_w = 0
    assert torch.isneginf(det.weight_threshold).all()


CASES = {"plain": {}, "ties": {"levels": 1000}, "heavy ties": {"levels": 30}}
CASES["dead neurons"] = {"zero_scale": 0.3}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("p", [1e-6, 0.1, 0.5, 0.9, 1.0])
def test_fast_selection_equals_all_products(case, p):
    w, c = head(60, 400, 2, **CASES[case])
    select = WeightThreshold(w, p)
    for label in range(w.shape[0]):
        a = np.abs(c[label])
        np.testing.assert_array_equal(select(a), select._dense(a), err_msg=f"class {label}")


def test_fast_selection_route_is_taken():
    # the sample brackets the order statistics: no fallback to all products
    w, c = head(60, 400, 2)
    select = WeightThreshold(w, 0.3)
    select._dense = None  # would fail if called
    select(np.abs(c[0]))


def test_dense_route_is_the_definition():
    w, c = head(5, 30, 3)
    thresholds = WeightThreshold(w, 0.7)._dense(np.abs(c[2]))
    products = np.abs(c[2])[None, :] * w
    expected = products > np.quantile(products, 0.7)
    np.testing.assert_array_equal(w > thresholds[None, :], expected)


@pytest.mark.parametrize("kw", [{}, {"levels": 30}, {"zero_scale": 0.3}])
@pytest.mark.parametrize("p", [0.1, 0.9])
def test_the_plugin_selection_is_the_core_selection(kw, p):
    w, c = head(30, 300, 5, **kw)
    core, _ = fitted(w, c, 0.2, p)
    plugin = PluginLINe(None, torch.from_numpy(w), p_a=0.2, p_w=p)
    plugin.class_means, plugin.class_counts = core.class_means, core.class_counts
    assert torch.equal(plugin.weight_threshold, core.weight_threshold)
    assert torch.equal(plugin.activation_keep, core.activation_keep)
