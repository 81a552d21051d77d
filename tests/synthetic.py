"""
Synthetic LINe problems shared by the tests: a small head with class-dependent post-ReLU
features, probe features, the rounding bound of two summation orders, and state equality.
"""

import torch

from line_plugin import LINe

NUM_CLASSES, NUM_FEATURES = 7, 13


def problem(
    seed: int,
    n: int = 140,
    integer: bool = False,
    w_scale: float = 1.0,
    num_classes: int = NUM_CLASSES,
    num_features: int = NUM_FEATURES,
):
    """
    A head and post-ReLU-like training features whose means depend on the class.

    :param seed: seed of the one generator that draws everything
    :param n: training samples, classes in turn
    :param integer: small integer weights and bias (every product and sum below is exact in
        float32)
    :param w_scale: scale of the (Gaussian) weights
    :param num_classes: classes :math:`K`
    :param num_features: features :math:`D`
    :return: ``x`` (:math:`n \\times D`), ``y``, ``w`` (:math:`K \\times D`), ``b``
    """
    g = torch.Generator().manual_seed(seed)
    k, d = num_classes, num_features
    if integer:
        w = torch.randint(-8, 9, (k, d), generator=g).float()
        b = torch.randint(-8, 9, (k,), generator=g).float()
    else:
        w = torch.randn(k, d, generator=g) * w_scale
        b = torch.randn(k, generator=g)
    y = torch.arange(n) % k
    centers = torch.rand(k, d, generator=g) * 2
    x = torch.relu(centers[y] + torch.randn(n, d, generator=g))
    return x, y, w, b


def test_features(seed: int, n: int, dtype: torch.dtype, integer: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    if integer:
        return torch.randint(-3, 9, (n, NUM_FEATURES), generator=g).to(dtype)
    return (torch.relu(torch.randn(n, NUM_FEATURES, generator=g) + 0.5) * 1.5).to(dtype)


test_features.__test__ = False  # a helper, not a test


def rounding_bound(det: LINe, x: torch.Tensor, scores: torch.Tensor, dtype: torch.dtype):
    """
    Largest difference, row by row, between two computations of the scores of ``x`` in
    ``dtype`` that sum in different orders, and the margin the top two logits need so that
    both pick the same class.
    """
    u = torch.finfo(dtype).eps / 2
    h = x.double() if det.clip is None else x.double().clamp(max=det.clip)
    w, b = det.weight.double(), det.bias.double()
    magnitude = (h.abs() @ w.abs().T + b.abs()).amax(dim=1)
    n = det.weight.shape[1] + 1
    logit_error = n * u / (1 - n * u) * magnitude
    lse_error = (det.weight.shape[0] + 8) * u + 2 * u * scores.double().abs()
    top2 = torch.topk(h @ w.T + b, 2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    return 2 * (logit_error + lse_error), gap > 2 * logit_error


def assert_same_state(a: LINe, b: LINe) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key, value in sa.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == sb[key].dtype, key
            assert torch.equal(value, sb[key]), key
        else:
            assert value == sb[key], key
