"""
The mask derivation: NumPy-exact quantiles, and the selection route for large heads against
the route that computes all K x D products (the same thresholds, bit for bit).
"""

import unittest

import numpy as np

from line_plugin import masks


def head(num_classes, num_features, seed, levels=None, zero_scale=0.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((num_classes, num_features)) * 0.01
    if levels:  # quantised weights: many exact ties
        w = np.round(w * levels) / levels
    w = w.astype(np.float32).astype(np.float64)
    means = np.abs(rng.standard_normal((num_classes, num_features)))
    means[rng.random(means.shape) < zero_scale] = 0  # dead neurons: zero contributions
    return w, masks.contributions(w, means)


class TestQuantile(unittest.TestCase):
    def test_matches_numpy(self):
        rng = np.random.default_rng(0)
        for n in (1, 2, 7, 100, 1001):
            values = rng.standard_normal((3, n))
            for q in (0.0, 1e-9, 0.1, 0.25, 0.5, 0.9, 1 - 1e-9, 1.0):
                with self.subTest(n=n, q=q):
                    np.testing.assert_array_equal(
                        masks.quantile(values, q, axis=1), np.quantile(values, q, axis=1)
                    )

    def test_activation_mask(self):
        w, c = head(6, 50, 1)
        for p in (0.1, 0.5, 0.9):
            expected = c > np.quantile(c, p, axis=1, keepdims=True)
            np.testing.assert_array_equal(masks.activation_mask(c, p), expected)
        self.assertTrue(masks.activation_mask(c, 0).all())


class TestSelection(unittest.TestCase):
    def assert_same(self, w, c, p):
        select = masks._ColumnSelection(w, p)
        for label in range(w.shape[0]):
            a = np.abs(c[label])
            np.testing.assert_array_equal(select(a), select.dense(a), err_msg=f"class {label}")

    def test_selection_equals_all_products(self):
        cases = {
            "plain": dict(),
            "ties": dict(levels=1000),
            "heavy ties": dict(levels=30),
            "dead neurons": dict(zero_scale=0.3),
        }
        for name, kw in cases.items():
            w, c = head(60, 400, 2, **kw)
            for p in (1e-6, 0.1, 0.5, 0.9, 1.0):
                with self.subTest(case=name, p=p):
                    self.assert_same(w, c, p)

    def test_dense_route_is_the_definition(self):
        w, c = head(5, 30, 3)
        thresholds = masks._ColumnSelection(w, 0.7).dense(np.abs(c[2]))
        products = np.abs(c[2])[None, :] * w
        expected = products > np.quantile(products, 0.7)
        np.testing.assert_array_equal(w > thresholds[None, :], expected)

    def test_weight_thresholds_large_head(self):
        # above the size where weight_thresholds switches to the selection route
        w, c = head(40, 2000, 4)
        thresholds = masks.weight_thresholds(w, c, 0.3)
        for label in (0, 17, 39):
            products = np.abs(c[label])[None, :] * w
            expected = products > np.quantile(products, 0.3)
            np.testing.assert_array_equal(w > thresholds[label][None, :], expected)
        np.testing.assert_array_equal(masks.weight_thresholds(w, c, 0), np.full(w.shape, -np.inf))
