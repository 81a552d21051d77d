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

    :param weight: final layer weights :math:`W`, shape :math:`K \\times D`
    :param contrib: contributions :math:`C`, shape :math:`K \\times D`
    :param p_w: fraction of weights pruned per class; 0 keeps all
    :param workers: threads to use; 0 uses one per CPU core (the work releases the GIL)
    :return: thresholds :math:`T`, shape :math:`K \\times D`: :math:`W_{kj}` is kept for class
        :math:`l` if and only if :math:`W_{kj} > T_{lj}`
    """
    num_classes, num_features = weight.shape
    if p_w == 0:
        return np.full(weight.shape, -np.inf)

    sorted_cols = np.sort(weight, axis=0)
    columns = np.arange(num_features)
    lo, hi, t = _order_positions(weight.size, p_w)
    thresholds = np.empty(weight.shape)

    def one_class(label: int) -> None:
        products = weight * np.abs(contrib[label])
        part = np.partition(products.ravel(), (lo, hi))
        cut = _lerp(part[lo], part[hi], t)
        pruned = np.count_nonzero(products <= cut, axis=0)
        largest_pruned = sorted_cols[np.maximum(pruned - 1, 0), columns]
        thresholds[label] = np.where(pruned > 0, largest_pruned, -np.inf)

    workers = workers or max(1, min(torch.get_num_threads(), num_classes))
    if workers == 1 or num_classes * num_features < 65536:
        for label in range(num_classes):
            one_class(label)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one_class, range(num_classes)))
    return thresholds
