"""The calibration of a decision threshold: exact properties on synthetic scores and labels."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from line_plugin.calibration import (
    DEFAULT_TPR,
    calibration_split,
    check_fraction,
    check_tpr,
    flag,
    threshold_at_tpr,
)

_scores = st.lists(
    st.floats(-50, 50, allow_nan=False).map(lambda v: round(v, 1)),  # rounding makes ties
    min_size=1,
    max_size=200,
)
_rates = st.floats(0.001, 1.0)


@settings(max_examples=200, deadline=None)
@given(scores=_scores, tpr=_rates)
def test_threshold_is_the_smallest_score_keeping_the_rate(scores, tpr):
    t = threshold_at_tpr(scores, tpr)
    s = np.asarray(scores)
    n = len(s)
    assert t in s
    assert (s <= t).sum() >= tpr * n - 1e-9  # keeps at least the rate
    assert (s < t).sum() < tpr * n - 1e-9  # any smaller threshold keeps less than the rate
    assert flag(s, t).sum() == (s > t).sum() <= n - math.ceil(round(tpr * n, 9))


@pytest.mark.parametrize(
    "tpr, expected",
    [(0.95, 95.0), (1.0, 100.0), (0.01, 1.0), (0.005, 1.0), (0.951, 96.0), (0.5, 50.0)],
)
def test_threshold_of_one_to_hundred(tpr, expected):
    scores = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))
    assert threshold_at_tpr(scores, tpr) == expected
    assert flag(scores, expected).sum() == 100 - expected


def test_threshold_rounding_of_the_rate_times_n():
    # 0.7 * 10 == 7.000000000000001 in floating point: still the 7th score, not the 8th
    assert threshold_at_tpr(np.arange(1.0, 11.0), 0.7) == 7.0
    assert threshold_at_tpr(np.arange(1.0, 11.0), 0.71) == 8.0


def test_threshold_with_ties_keeps_every_tied_score():
    scores = [0.0] * 10 + [1.0] * 10
    t = threshold_at_tpr(scores, 0.3)
    assert t == 0.0 and flag(scores, t).tolist() == [False] * 10 + [True] * 10


def test_threshold_accepts_tensors_and_float32():
    scores = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float32)
    assert threshold_at_tpr(scores, 2 / 3) == 2.0
    assert flag(scores, 2.0).tolist() == [True, False, False]
    assert DEFAULT_TPR == 0.95


@pytest.mark.parametrize(
    "scores, tpr, message",
    [
        ([], 0.95, "no scores"),
        ([1.0, float("nan")], 0.95, "non-finite"),
        ([1.0, float("inf")], 0.95, "non-finite"),
        ([1.0], 0.0, r"true-positive rate must be in \(0, 1\]"),
        ([1.0], 1.01, r"true-positive rate must be in \(0, 1\]"),
        ([1.0], -0.5, r"true-positive rate must be in \(0, 1\]"),
        ([1.0], float("nan"), "true-positive rate must be finite"),
        ([1.0], "high", "true-positive rate must be a number"),
        ([1.0], True, "true-positive rate must be a number"),
    ],
)
def test_threshold_errors(scores, tpr, message):
    with pytest.raises(ValueError, match=message):
        threshold_at_tpr(scores, tpr)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), None, "x"])
def test_flag_needs_a_finite_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be"):
        flag([1.0], threshold)


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_stratified_disjoint_and_seeded(counts, fraction, seed):
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    size = len(labels)
    try:
        fit, cal = calibration_split(labels, size, fraction, seed)
    except ValueError as e:  # only a split that holds out nothing may be refused
        assert "holds out none" in str(e)
        room = sum(min(math.ceil(fraction * n_c), n_c - 1) for n_c in counts)
        assert fraction > 0 and min(round(fraction * size), room) == 0
        return
    assert np.array_equal(np.sort(np.concatenate([fit, cal])), np.arange(size))
    assert len(np.intersect1d(fit, cal)) == 0
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(cal) > 0)
    for c, n_c in enumerate(counts):
        held = int((labels[cal] == c).sum())
        assert held in (math.floor(fraction * n_c), math.ceil(fraction * n_c))
        assert held <= n_c - 1  # every class keeps a fit image
    room = sum(min(math.ceil(fraction * n_c), n_c - 1) for n_c in counts)
    assert len(cal) == min(round(fraction * size), room)
    again = calibration_split(labels, size, fraction, seed)
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], cal)


def test_split_of_balanced_classes_holds_out_the_fraction_of_each():
    labels = np.repeat(np.arange(10), 100)
    fit, cal = calibration_split(labels, 1000, 0.1, seed=3)
    assert len(cal) == 100 and len(fit) == 900
    assert np.bincount(labels[cal]).tolist() == [10] * 10
    other = calibration_split(labels, 1000, 0.1, seed=4)[1]
    assert not np.array_equal(cal, other)  # the seed chooses which images


def test_split_of_uneven_classes_gives_the_remainder_to_the_largest_remainders():
    labels = np.array([0] * 15 + [1] * 5 + [2] * 5)  # 0.2: quotas 3, 1, 1
    fit, cal = calibration_split(labels, 25, 0.2)
    assert np.bincount(labels[cal], minlength=3).tolist() == [3, 1, 1]
    labels = np.array([0] * 7 + [1] * 7 + [2] * 6)  # 0.25: quotas 1.75, 1.75, 1.5; total 5
    cal = calibration_split(labels, 20, 0.25)[1]
    assert np.bincount(labels[cal], minlength=3).tolist() == [2, 2, 1]


def test_split_without_labels_and_without_calibration():
    fit, cal = calibration_split(None, 50, 0.2, seed=0)
    assert len(cal) == 10 and len(fit) == 40
    fit, cal = calibration_split(torch.arange(5), 5, 0.0)
    assert fit.tolist() == [0, 1, 2, 3, 4] and cal.tolist() == []


@pytest.mark.parametrize(
    "labels, size, fraction, message",
    [
        (None, 10, 1.0, r"calibration fraction must be in \[0, 1\)"),
        (None, 10, -0.1, r"calibration fraction must be in \[0, 1\)"),
        (None, 10, float("nan"), "calibration fraction must be finite"),
        (None, 10, "a tenth", "calibration fraction must be a number"),
        (None, 10, 0.01, "holds out none"),
        ([0, 1, 2], 3, 0.5, "holds out none"),  # one image per class: all stay for the fit
        ([0, 1], 3, 0.5, "got 2 labels for 3 positions"),
        (None, -1, 0.5, "size must be >= 0"),
    ],
)
def test_split_errors(labels, size, fraction, message):
    with pytest.raises(ValueError, match=message):
        calibration_split(labels, size, fraction)


def test_checks_return_floats():
    assert check_fraction(0) == 0.0 and isinstance(check_fraction(0), float)
    assert check_tpr(1) == 1.0
