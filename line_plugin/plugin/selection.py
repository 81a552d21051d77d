"""
The plugin's fast exact selection of the weight thresholds (step 3), bit for bit those of the
upstream detector's :meth:`~line_plugin.core.LINe.weight_thresholds` (the quantile over all
:math:`KD` products), in about :math:`O(D \\log K)` per class instead of :math:`O(KD)`.
"""

from typing import Optional

import numpy as np
import torch


def _lerp(a, b, t: float):
    # numpy's (and torch.lerp's) formula, for quantiles identical to numpy.quantile's
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


class WeightThreshold:
    """
    Step 3 for one class at a time: from the scales :math:`a_j = |C_{lj}|`, the thresholds
    :math:`T_{l,:}` with :math:`W_{kj}` kept if and only if :math:`a_j W_{kj} >
    \\mathrm{quantile}(a \\odot W, p_w)`.

    The products of column :math:`j` are ordered as the sorted column :math:`W_{:,j}` is, so the
    number of products :math:`\\le v` in a column is a binary search for :math:`v / a_j`,
    corrected exactly at its boundary. The two order statistics of the quantile are bracketed by a
    fixed sample of products and selected among the few products inside the bracket: about
    :math:`O(D \\log K)` per class instead of :math:`O(KD)`. Where the bracket misses, all
    :math:`KD` products are computed.
    """

    def __init__(self, weight: np.ndarray, p_w: float, sample_size: int = 16384):
        self.weight, self.p_w = weight, p_w
        self.sorted = np.sort(weight, axis=0)
        self.sorted_rows = torch.from_numpy(np.ascontiguousarray(self.sorted.T))  # D x K
        self.columns = np.arange(weight.shape[1])
        virtual = (weight.size - 1) * p_w  # numpy's linear quantile: two order statistics
        self.lo = int(np.floor(virtual))
        self.hi, self.t = min(self.lo + 1, weight.size - 1), float(virtual - np.floor(virtual))
        m = min(sample_size, weight.size)
        flat = np.random.default_rng(0).choice(weight.size, size=m, replace=False)
        rows, self.sample_cols = np.unravel_index(flat, weight.shape)
        self.sample_weight = weight[rows, self.sample_cols]
        # sample ranks that bracket the order statistics with overwhelming probability
        q = self.lo / max(weight.size - 1, 1)
        spread = int(8 * np.sqrt(m * max(q * (1 - q), 1.0 / m))) + 8
        self.sample_lo, self.sample_hi = int(q * (m - 1)) - spread, int(q * (m - 1)) + spread + 1
        self.sample_ranks = [r for r in (self.sample_lo, self.sample_hi) if 0 <= r < m]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        sample = self.sample_weight * a[self.sample_cols]
        if self.sample_ranks:  # the two sample order statistics of the bracket, in place
            sample.partition(self.sample_ranks)
        v_lo = sample[self.sample_lo] if self.sample_lo >= 0 else -np.inf
        v_hi = sample[self.sample_hi] if self.sample_hi < len(sample) else np.inf
        c_lo, c_hi = self._counts(a, v_lo), self._counts(a, v_hi)
        if c_lo is None or c_hi is None or c_lo.sum() > self.lo or c_hi.sum() <= self.hi:
            return self._dense(a)
        # the products in (v_lo, v_hi]: ranks c_lo[j] .. c_hi[j] - 1 of each sorted column
        lengths = c_hi - c_lo
        cols = np.repeat(self.columns, lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.arange(len(cols)) - starts + np.repeat(c_lo, lengths)
        below = int(c_lo.sum())
        part = np.partition(self.sorted[rows, cols] * a[cols], (self.lo - below, self.hi - below))
        pruned = self._counts(a, _lerp(part[self.lo - below], part[self.hi - below], self.t))
        return self._dense(a) if pruned is None else self._thresholds(pruned)

    def _dense(self, a: np.ndarray) -> np.ndarray:
        products = self.weight * a
        part = np.partition(products.ravel(), (self.lo, self.hi))
        cut = _lerp(part[self.lo], part[self.hi], self.t)
        return self._thresholds(np.count_nonzero(products <= cut, axis=0))

    def _thresholds(self, pruned: np.ndarray) -> np.ndarray:
        # the largest pruned weight of each column; -inf where none is pruned
        largest = self.sorted[np.maximum(pruned - 1, 0), self.columns]
        return np.where(pruned > 0, largest, -np.inf)

    def _counts(self, a: np.ndarray, v: float) -> Optional[np.ndarray]:
        """per column, the number of products :math:`\\le v`; ``None`` if ties prevent it"""
        num_rows = len(self.sorted)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = torch.from_numpy(np.where(a > 0, v / a, 0.0))
        r = torch.searchsorted(self.sorted_rows, u[:, None], right=True)[:, 0].numpy()
        for _ in range(8):  # the division is off by an ulp at most: fix the boundary exactly
            below = np.clip(r - 1, 0, num_rows - 1)
            too_many = (r > 0) & (a * self.sorted[below, self.columns] > v)
            at = np.minimum(r, num_rows - 1)
            too_few = (r < num_rows) & (a * self.sorted[at, self.columns] <= v)
            if not (too_many.any() or too_few.any()):
                break
            r = r - too_many + too_few
        else:
            return None
        # a zero scale makes every product 0: all are <= v exactly when 0 <= v
        return np.where(a > 0, r, num_rows if v >= 0 else 0)
