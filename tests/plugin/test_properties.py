"""
Property tests (hypothesis): a sample's score does not depend on its batch, fitting is
deterministic, the state round trip is exact, and every finite input gets a finite score.

Tolerances are rounding bounds, not guesses. For a dot product of length :math:`D` computed in any
order (BLAS picks kernels by batch shape, so a row's logits differ in the last bits between
batchings, in float64 too), :math:`|\\hat z - z| \\le \\gamma_{D+1} (|W| |h| + |b|)` with
:math:`\\gamma_n = n u / (1 - n u)` and :math:`u` the unit roundoff; the log-sum-exp is
1-Lipschitz in the logits and adds :math:`O(K u)`. Two computations differ by at most twice that.
Where integer-valued inputs make the arithmetic exact, the scores must agree bitwise.
"""

import math
import tempfile
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from synthetic import (
    NUM_CLASSES,
    NUM_FEATURES,
    assert_same_state,
    problem,
    rounding_bound,
    test_features,
)
from torch.utils.data import DataLoader, TensorDataset

from line_plugin import LINe
from line_plugin.plugin import sample as line_sample

FRACTIONS = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])
CLIPS = st.sampled_from([None, 0.5, 1.0, 2.0])
SEEDS = st.integers(0, 2**31 - 1)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fitted(seed, p_a, p_w, clip, **kw) -> LINe:
    x, y, w, b = problem(seed, **kw)
    return LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip).fit_features(x, y)


def split(x: torch.Tensor, cuts):
    bounds = [0, *sorted(set(cuts)), x.shape[0]]
    return [x[lo:hi] for lo, hi in zip(bounds, bounds[1:])]


# -- a sample's score does not depend on its batch -----------------------------------------------


@FAST
@given(
    seed=SEEDS,
    p_a=FRACTIONS,
    p_w=FRACTIONS,
    clip=CLIPS,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    n=st.integers(2, 40),
    data=st.data(),
)
def test_score_does_not_depend_on_batch(seed, p_a, p_w, clip, dtype, n, data):
    det = fitted(seed, p_a, p_w, clip)
    x = test_features(seed, n, dtype)
    full = det.predict_features(x)
    bound, clear = rounding_bound(det, x, full, dtype)
    assume(bool(clear.all()))  # a near tie may pick another class in another batch: no property
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    cuts = data.draw(st.lists(st.integers(1, n - 1), max_size=4))
    candidates = {
        "permuted": det.predict_features(x[perm])[perm.argsort()],
        "split": torch.cat([det.predict_features(part) for part in split(x, cuts)]),
        "one by one": torch.cat([det.predict_features(row) for row in x.split(1)]),
    }
    for name, scores in candidates.items():
        assert scores.dtype == full.dtype == dtype
        error = (scores.double() - full.double()).abs()
        assert (error <= bound).all(), (name, (error / bound).max().item())


@FAST
@given(
    seed=SEEDS,
    p_a=FRACTIONS,
    p_w=FRACTIONS,
    clip=st.sampled_from([None, 1.0, 2.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    n=st.integers(2, 40),
    data=st.data(),
)
def test_score_does_not_depend_on_batch_exactly_when_arithmetic_is_exact(
    seed, p_a, p_w, clip, dtype, n, data
):
    # integer features, weights, biases and clips: every logit is exact in any summation order
    # (including exact ties, which must pick the same class), so the scores agree bitwise
    det = fitted(seed, p_a, p_w, clip, integer=True)
    x = test_features(seed, n, dtype, integer=True)
    full = det.predict_features(x)
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    cuts = data.draw(st.lists(st.integers(1, n - 1), max_size=4))
    assert torch.equal(det.predict_features(x[perm]), full[perm])
    assert torch.equal(torch.cat([det.predict_features(p) for p in split(x, cuts)]), full)
    assert torch.equal(torch.cat([det.predict_features(row) for row in x.split(1)]), full)
    # and, the logits being exact, they are the float64 scores up to the log-sum-exp's rounding
    exact = det.predict_features(x.double())
    u = torch.finfo(dtype).eps / 2
    assert ((full.double() - exact).abs() <= (NUM_CLASSES + 8) * u + 2 * u * exact.abs()).all()


# -- fitting is deterministic ------------------------------------------------------------------


@FAST
@given(seed=SEEDS, p_a=FRACTIONS, p_w=FRACTIONS, clip=CLIPS, quantile=st.booleans())
def test_fitting_twice_gives_the_same_detector(seed, p_a, p_w, clip, quantile):
    x, y, w, b = problem(seed)
    kw = {"p_a": p_a, "p_w": p_w, "clip": clip, "clip_quantile": 0.8 if quantile else None}
    first = LINe(None, w, b, **kw).fit_features(x, y)
    second = LINe(None, w, b, **kw).fit_features(x, y)
    assert_same_state(first, second)
    # fitting again on the same object changes nothing either
    before = LINe(None, w, b, **kw).load_state_dict(first.state_dict())
    first.fit_features(x, y)
    assert_same_state(first, before)
    test = test_features(seed, 20, torch.float32)
    assert torch.equal(first.predict_features(test), second.predict_features(test))


@FAST
@given(seed=SEEDS, batch_sizes=st.lists(st.integers(1, 140), min_size=1, max_size=3))
def test_fit_does_not_depend_on_batching(seed, batch_sizes):
    # sums run over the samples in order whatever the batches: bitwise the same class means;
    # with a small sample capacity, the strided activation sample is the same too
    x, y, w, b = problem(seed)
    capacity = 64
    with mock.patch.object(line_sample, "SAMPLE_CAPACITY", capacity):
        whole = LINe(None, w, b).fit_features(x, y)
        for batch_size in batch_sizes:
            loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
            det = LINe(torch.nn.Identity(), w, b).fit(loader, progress=False)
            assert_same_state(det, whole)
    # the sample keeps the activations whose index is a multiple of the smallest stride that fits
    total = x.numel()
    stride = next(s for s in (2**k for k in range(64)) if math.ceil(total / s) <= capacity)
    assert torch.equal(whole.activation_sample, x.flatten()[::stride])


@FAST
@given(seed=SEEDS, data=st.data())
def test_fit_on_permuted_data_agrees_to_float64_rounding(seed, data):
    x, y, w, b = problem(seed)
    perm = torch.tensor(data.draw(st.permutations(range(x.shape[0]))))
    a = LINe(None, w, b).fit_features(x, y)
    p = LINe(None, w, b).fit_features(x[perm], y[perm])
    counts = a.class_counts.double()[:, None]
    # the sums of n values differ by at most 2 gamma_n times the sum of their magnitudes
    sums = torch.zeros(NUM_CLASSES, NUM_FEATURES, dtype=torch.float64)
    sums.index_add_(0, y, x.double().abs())
    n = counts.max()
    bound = 2 * n * 2**-53 / (1 - n * 2**-53) * sums / counts
    assert ((a.class_means - p.class_means).abs() <= bound).all()
    assert torch.equal(a.class_counts, p.class_counts)
    assert torch.equal(a.activation_sample.sort().values, p.activation_sample.sort().values)


@FAST
@given(
    seed=SEEDS,
    dtype=st.sampled_from([torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]),
    ood=st.integers(0, 20),
)
def test_integer_labels_of_any_dtype(seed, dtype, ood):
    x, y, w, b = problem(seed)
    if dtype == torch.uint8:
        ood = 0  # no negative labels in uint8
    y = y.clone()
    y[:ood] = -1
    reference = LINe(None, w, b).fit_features(x, y)
    det = LINe(None, w, b).fit_features(x, y.to(dtype))
    assert_same_state(det, reference)
    loader = DataLoader(TensorDataset(x, y.to(dtype)), batch_size=32)
    assert_same_state(LINe(torch.nn.Identity(), w, b).fit(loader, progress=False), reference)


# -- the state round trip is exact -------------------------------------------------------------


@FAST
@given(
    seed=SEEDS, p_a=FRACTIONS, p_w=FRACTIONS, clip=CLIPS, quantile=st.booleans(), data=st.data()
)
def test_state_round_trip_is_exact(seed, p_a, p_w, clip, quantile, data):
    x, y, w, b = problem(seed)
    det = LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip, clip_quantile=0.7 if quantile else None)
    det.fit_features(x, y)
    if data.draw(st.booleans()):  # hyperparameters changed after the fit: masks re-derived
        det.set_hyperparameters(p_a=data.draw(FRACTIONS), p_w=data.draw(FRACTIONS))
    test = test_features(seed, 25, data.draw(st.sampled_from([torch.float32, torch.float64])))
    expected = det.predict_features(test)

    loaded = LINe(None, w, b).load_state_dict(det.state_dict())
    assert_same_state(loaded, det)
    assert loaded.get_hyperparameters() == det.get_hyperparameters()
    assert loaded.clip_quantile == det.clip_quantile
    assert torch.equal(loaded.predict_features(test), expected)

    with tempfile.TemporaryDirectory() as tmp:
        det.save(f"{tmp}/line.pt")
        # loading replaces the state of an already fitted detector, too
        from_file = LINe(None, w, b, p_a=0.3).fit_features(x[:70], y[:70]).load(f"{tmp}/line.pt")
    assert_same_state(from_file, det)
    assert torch.equal(from_file.predict_features(test), expected)


# -- finite scores for every finite input ------------------------------------------------------

_BF16_MAX = torch.finfo(torch.bfloat16).max  # a float32 value
FLOAT_INPUTS = {
    torch.float64: st.floats(allow_nan=False, allow_infinity=False, width=64),
    torch.float32: st.floats(allow_nan=False, allow_infinity=False, width=32),
    torch.float16: st.floats(allow_nan=False, allow_infinity=False, width=16),
    # bfloat16 has float32's exponent range, though its largest value is a little smaller
    torch.bfloat16: st.floats(
        -_BF16_MAX, _BF16_MAX, allow_nan=False, allow_infinity=False, width=32
    ),
}
NUMPY = {torch.float64: np.float64, torch.float16: np.float16}


@st.composite
def finite_features(draw, dtype):
    n = draw(st.integers(0, 12))
    values = draw(
        hnp.arrays(NUMPY.get(dtype, np.float32), (n, NUM_FEATURES), elements=FLOAT_INPUTS[dtype])
    )
    x = torch.from_numpy(values).to(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided", "expanded"]))
    if layout == "transposed":
        x = x.T.contiguous().T
    elif layout == "strided":
        wide = torch.zeros(2 * n, 3 * NUM_FEATURES, dtype=dtype)
        wide[::2, ::3] = x
        x = wide[::2, ::3]
    elif layout == "expanded" and n:
        x = x[:1].expand(n, NUM_FEATURES)
    assert torch.isfinite(x.double()).all()
    return x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 7),
    p_a=FRACTIONS,
    p_w=FRACTIONS,
    clip=CLIPS,
    scale=st.sampled_from([1.0, 1e-30, 1e30, 3e37]),
    w_scale=st.sampled_from([1.0, 1e-20, 1e20]),
    data=st.data(),
)
def test_scores_are_finite_for_every_finite_input(seed, p_a, p_w, clip, scale, w_scale, data):
    x, y, w, b = problem(seed, w_scale=w_scale)
    det = LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip).fit_features(x * scale, y)
    dtype = data.draw(st.sampled_from(list(FLOAT_INPUTS)))
    features = data.draw(finite_features(dtype))
    scores = det.predict_features(features)
    assert scores.shape == (features.shape[0],)
    assert scores.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.isfinite(scores).all(), (features, scores)
    # the layout does not matter beyond rounding
    if features.shape[0] and dtype != torch.float64:
        contiguous = det.predict_features(features.contiguous())
        bound, clear = rounding_bound(det, features.float(), contiguous, torch.float32)
        error = (scores.double() - contiguous.double()).abs()
        assert (~clear | (error <= bound) | (contiguous.abs() == torch.finfo().max)).all()


@pytest.mark.parametrize(
    "dtype, value",
    [
        (torch.float32, 1e30),
        (torch.float32, -1e30),
        (torch.float32, 3.4e38),
        (torch.float32, -3.4e38),
        (torch.float16, 6e4),
        (torch.float16, -6.5e4),
        (torch.bfloat16, 3.3e38),
        (torch.bfloat16, -3.3e38),
        (torch.float64, 1.7e308),
        (torch.float64, -1.7e308),
    ],
)
@pytest.mark.parametrize("setting", [(0.0, 0.0, None), (0.5, 0.0, None), (0.9, 0.9, 1.0)])
def test_huge_features(dtype, value, setting):
    det = fitted(0, *setting)
    # one huge row among ordinary ones, and rows of mixed signs
    x = test_features(0, 6, torch.float32).to(dtype)
    x[1] = value
    x[3, ::2] = value
    x[4, ::2] = -value
    scores = det.predict_features(x)
    assert torch.isfinite(scores).all(), scores
    # rows without huge values are scored as if alone
    for row in (0, 2, 5):
        torch.testing.assert_close(scores[row : row + 1], det.predict_features(x[row : row + 1]))
    if dtype == torch.float64:
        return
    # float32 scores are the float64 ones to float32 rounding (beyond near ties) ...
    limit = torch.finfo(torch.float32).max
    wide = det.predict_features(x.double()).clamp(-limit, limit)
    bound, clear = rounding_bound(det, x.float(), wide, torch.float32)
    assert ((scores.double() - wide).abs() <= bound)[clear].all()
    # ... and rows whose float32 logits overflow are the float64 scores, saturated at float32's
    # largest value: rounded once, they agree to an ulp
    overflowed = ~torch.isfinite(det.pruned_logits(x)).all(dim=1)
    if setting == (0.0, 0.0, None) and abs(value) > 3e38:
        assert overflowed.any()
    torch.testing.assert_close(scores[overflowed], wide[overflowed].float(), rtol=2e-7, atol=0)


def test_overflow_saturates_and_keeps_the_order():
    # clip=None, no pruning: the energy of logits far beyond float32 and even float64
    det = fitted(0, 0.0, 0.0, None)
    ones = torch.ones(1, NUM_FEATURES)
    w_sum = det.weight.double().sum(dim=1)  # the weights are float32: summed exactly here
    assert (w_sum.max() > 0).item()  # the logits of positive features grow without bound
    limit32, limit64 = torch.finfo(torch.float32).max, torch.finfo(torch.float64).max
    assert det.predict_features(ones * 3e38).item() == -limit32
    assert det.predict_features(ones.double() * 1.7e308).item() == -limit64
    # below saturation, larger features mean a larger energy: the scores keep their order
    scales = torch.tensor([1e36, 1e37, 1e38, 2e38, 3.4e38])
    x = ones * scales[:, None]
    wide = det.predict_features(x.double())
    expected = -scales.double() * w_sum.max().double()
    torch.testing.assert_close(wide, expected, rtol=1e-12, atol=0)
    scores = det.predict_features(x)
    assert (scores[:-1] >= scores[1:]).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_empty_batch(dtype):
    det = fitted(0, 0.9, 0.9, 1.0)
    scores = det.predict_features(torch.zeros(0, NUM_FEATURES, dtype=dtype))
    assert scores.shape == (0,)
    assert scores.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("value", [1.5e308, 7e307])
def test_fits_beyond_float64_are_refused(value):
    # finite float64 features whose class sums (1.5e308), or whose class means times the
    # weights (7e307), overflow: a clear error, not infinite means or masks of NaN
    _, _, w, b = problem(0)
    x = torch.full((2 * NUM_CLASSES, NUM_FEATURES), value, dtype=torch.float64)
    y = torch.arange(2 * NUM_CLASSES) % NUM_CLASSES
    det = fitted(0, 0.9, 0.9, 1.0)
    before = det.state_dict()
    with pytest.raises(ValueError, match="overflow float64"):
        det.fit_features(x, y)
    assert_same_state(det, LINe(None, w, b).load_state_dict(before))  # left as it was
    huge = LINe(None, w, b).fit_features(x / value * 1e300, y)  # below the limits: fine
    assert torch.isfinite(huge.predict_features(x)).all()
