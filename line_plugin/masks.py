"""
The masks of LINe (steps 2 and 3 of the paper), derived from the class contributions.

For a linear head :math:`W` (:math:`K \\times D`) and the class means :math:`A` of the unclipped
penultimate features, the contribution of neuron :math:`j` to class :math:`l` is
:math:`C_{lj} = W_{lj} A_{lj}`, the exact Shapley value of that neuron for the logit of class
:math:`l`. Everything here runs in float64 on the CPU, once per fit or hyperparameter change.

Quantiles follow NumPy's (and PyTorch's) default ``linear`` interpolation to the last bit, and
every mask keeps the entries *strictly* above its quantile, as the authors' code does. A fraction
of 0 keeps everything (the literal rule would drop the minimum).

Weight masks are stored as thresholds: for class :math:`l` and neuron :math:`j`, the weight
:math:`W_{kj}` is kept if and only if :math:`W_{kj} > T_{lj}`. This holds exactly because
:math:`|C_{lj}| W_{kj}` is monotone in :math:`W_{kj}`, so the entries of column :math:`j` that the
quantile prunes are its smallest ones; :math:`T_{lj}` is the largest of them (:math:`-\\infty`
where none is pruned). The whole :math:`K \\times K \\times D` mask tensor of the official code
is thereby a :math:`K \\times D` matrix.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Tuple

import numpy as np
import torch

#: heads with fewer weights compute all products, in one thread
_SMALL_HEAD = 65536


def _order_positions(n: int, q: float) -> Tuple[int, int, float]:
    """
    Positions of the two order statistics and the interpolation weight of NumPy's ``linear``
    quantile of ``n`` values.
    """
    virtual = (n - 1) * q
    lo = int(np.floor(virtual))
    hi = min(lo + 1, n - 1)
    return lo, hi, float(virtual - lo)


def _lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    # the formula of numpy.lib._function_base_impl._lerp (and torch.lerp), for identical rounding
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def quantile(values: np.ndarray, q: float, axis: int = -1) -> np.ndarray:
    """
    The ``q``-quantile along ``axis``, identical to ``numpy.quantile(values, q, axis)``.

    :param values: array of values
    :param q: fraction in :math:`[0, 1]`
    :param axis: axis to reduce
    :return: quantiles, ``values`` without ``axis``
    """
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    lo, hi, t = _order_positions(values.shape[-1], q)
    part = np.partition(values, (lo, hi), axis=-1)
    return _lerp(part[..., lo], part[..., hi], t)


def contributions(weight: np.ndarray, class_means: np.ndarray) -> np.ndarray:
    """
    :param weight: final layer weights :math:`W`, shape :math:`K \\times D`
    :param class_means: class means :math:`A` of the penultimate features, :math:`K \\times D`
    :return: contributions :math:`C = W \\odot A`, shape :math:`K \\times D`
    """
    return weight * class_means


def activation_mask(contrib: np.ndarray, p_a: float) -> np.ndarray:
    """
    Step 2: for each class :math:`l`, keep neuron :math:`j` where
    :math:`C_{lj} > \\mathrm{quantile}(C_{l,:}, p_a)`.

    :param contrib: contributions :math:`C`, shape :math:`K \\times D`
    :param p_a: fraction of neurons pruned per class; 0 keeps all
    :return: boolean keep mask, shape :math:`K \\times D`
    """
    if p_a == 0:
        return np.ones(contrib.shape, dtype=bool)
    return contrib > quantile(contrib, p_a, axis=1)[:, None]


def weight_thresholds(
    weight: np.ndarray, contrib: np.ndarray, p_w: float, workers: int = 0
) -> np.ndarray:
    """
    Step 3: for each class :math:`l`, keep :math:`W_{kj}` where
    :math:`P^l_{kj} = |C_{lj}| W_{kj} > \\mathrm{quantile}(P^l, p_w)` over all :math:`K D`
    entries of :math:`P^l`, returned as thresholds on :math:`W` (see the module's notes).

    Large heads take the selection route of :class:`_ColumnSelection` (exact, about
    :math:`O(D \\log K)` per class instead of :math:`O(K D)`); small ones, and any class where
    that route cannot conclude, compute all :math:`K D` products.

    :param weight: final layer weights :math:`W`, shape :math:`K \\times D`
    :param contrib: contributions :math:`C`, shape :math:`K \\times D`
    :param p_w: fraction of weights pruned per class; 0 keeps all
    :param workers: threads to use; 0 uses one per CPU core (the work releases the GIL)
    :return: thresholds :math:`T`, shape :math:`K \\times D`: :math:`W_{kj}` is kept for class
        :math:`l` if and only if :math:`W_{kj} > T_{lj}`
    """
    num_classes = weight.shape[0]
    if p_w == 0:
        return np.full(weight.shape, -np.inf)
    small = weight.size < _SMALL_HEAD
    select = _ColumnSelection(weight, p_w)
    one_class = select.dense if small else select
    thresholds = np.empty(weight.shape)

    def run(label: int) -> None:
        thresholds[label] = one_class(np.abs(contrib[label]))

    workers = workers or max(1, min(torch.get_num_threads(), num_classes))
    if workers == 1 or small:
        for label in range(num_classes):
            run(label)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, range(num_classes)))
    return thresholds


class _ColumnSelection:
    """
    The weight-mask threshold of one class, from the scale :math:`a_j = |C_{lj}|` of each column.

    The products :math:`a_j W_{kj}` of column :math:`j` are sorted as :math:`W_{:,j}` is (a
    product with :math:`a_j \\ge 0` is monotone, rounding included), so the number of products
    :math:`\\le v` in a column is a binary search in the sorted column, corrected at the boundary
    with the exact products. The two order statistics of the quantile are bracketed by a fixed
    sample of products, and selected exactly among the few products inside the bracket.

    :param weight: :math:`W`, shape :math:`K \\times D`
    :param p_w: the fraction pruned, in :math:`(0, 1]`
    :param sample_size: number of sampled products for the bracket
    """

    def __init__(self, weight: np.ndarray, p_w: float, sample_size: int = 16384):
        self.weight = weight
        self.sorted = np.sort(weight, axis=0)
        self.sorted_rows = torch.from_numpy(np.ascontiguousarray(self.sorted.T))  # D x K
        self.columns = np.arange(weight.shape[1])
        self.lo, self.hi, self.t = _order_positions(weight.size, p_w)
        rng = np.random.default_rng(0)
        m = min(sample_size, weight.size)
        flat = rng.choice(weight.size, size=m, replace=False)
        self.sample_rows, self.sample_cols = np.unravel_index(flat, weight.shape)
        # sample ranks that bracket the order statistics with overwhelming probability
        q = self.lo / max(weight.size - 1, 1)
        spread = int(8 * np.sqrt(m * max(q * (1 - q), 1.0 / m))) + 8
        self.sample_lo, self.sample_hi = int(q * (m - 1)) - spread, int(q * (m - 1)) + spread + 1

    def dense(self, a: np.ndarray) -> np.ndarray:
        """all :math:`K D` products: the reference route"""
        products = self.weight * a
        part = np.partition(products.ravel(), (self.lo, self.hi))
        cut = _lerp(part[self.lo], part[self.hi], self.t)
        return self._thresholds(np.count_nonzero(products <= cut, axis=0))

    def _thresholds(self, pruned: np.ndarray) -> np.ndarray:
        largest_pruned = self.sorted[np.maximum(pruned - 1, 0), self.columns]
        return np.where(pruned > 0, largest_pruned, -np.inf)

    def _counts(self, a: np.ndarray, v: float):
        """per column, the number of products :math:`\\le v`; ``None`` if ties prevent it"""
        num_rows = self.sorted.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(a > 0, v / a, 0.0)
        r = torch.searchsorted(self.sorted_rows, torch.from_numpy(u)[:, None], right=True)
        r = r[:, 0].numpy().astype(np.int64)
        for _ in range(8):  # the division is off by an ulp at most: fix the boundary exactly
            below = np.minimum(np.maximum(r - 1, 0), num_rows - 1)
            too_many = (r > 0) & (a * self.sorted[below, self.columns] > v)
            at = np.minimum(r, num_rows - 1)
            too_few = (r < num_rows) & (a * self.sorted[at, self.columns] <= v)
            if not (too_many.any() or too_few.any()):
                break
            r = r - too_many + too_few
        else:
            return None
        # a zero scale makes every product 0 (or -0): all of them are <= v exactly when 0 <= v
        return np.where(a > 0, r, num_rows if v >= 0 else 0)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        sample = np.sort(self.weight[self.sample_rows, self.sample_cols] * a[self.sample_cols])
        m = sample.shape[0]
        v_lo = sample[self.sample_lo] if self.sample_lo >= 0 else -np.inf
        v_hi = sample[self.sample_hi] if self.sample_hi < m else np.inf
        c_lo, c_hi = self._counts(a, v_lo), self._counts(a, v_hi)
        if c_lo is None or c_hi is None or c_lo.sum() > self.lo or c_hi.sum() <= self.hi:
            return self.dense(a)
        # the products in (v_lo, v_hi]: ranks c_lo[j] .. c_hi[j] - 1 of each sorted column
        lengths = c_hi - c_lo
        cols = np.repeat(self.columns, lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.arange(cols.shape[0]) - starts + np.repeat(c_lo, lengths)
        inside = self.sorted[rows, cols] * a[cols]
        below = int(c_lo.sum())
        part = np.partition(inside, (self.lo - below, self.hi - below))
        cut = _lerp(part[self.lo - below], part[self.hi - below], self.t)
        pruned = self._counts(a, cut)
        return self.dense(a) if pruned is None else self._thresholds(pruned)
