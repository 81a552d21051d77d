"""
The core detector (the upstream module) against an independent per-sample float64 reference, its
special cases (Energy, ReAct), hyperparameter changes, pytorch-ood's conventions (labels, the
``detector`` argument, NaN in and NaN out, devices), on synthetic tensors.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_ood.detector import ReAct
from pytorch_ood.detector.energy import EnergyBased
from reference import reference_line_scores
from synthetic import problem
from torch.utils.data import DataLoader, TensorDataset

from line_plugin.core import LINe


def problem_of(num_classes, num_features, seed):
    """the problem of tests/synthetic.py, of another size"""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_classes, num_features, generator=g)
    b = torch.randn(num_classes, generator=g)
    y = torch.arange(400) % num_classes
    centers = torch.rand(num_classes, num_features, generator=g) * 2
    x = torch.relu(centers[y] + torch.randn(400, num_features, generator=g))
    return x, y, w, b


SETTINGS = [
    (0.9, 0.9, 1.0),  # the CIFAR-10 preset
    (0.1, 0.9, 1.0),  # CIFAR-100
    (0.1, 0.1, 0.8),  # ImageNet
    (0.5, 0.0, None),
    (0.0, 0.5, 2.0),
    (0.0, 0.0, None),  # everything off
    (0.3, 0.7, None),
    (1.0, 1.0, 1.0),  # everything pruned: the logits are the bias
]


# --- against the reference


@pytest.fixture
def ref():
    x, y, w, b = problem(0, n=400)
    test = torch.relu(torch.randn(50, 13, generator=torch.Generator().manual_seed(1)))
    return SimpleNamespace(x=x, y=y, w=w, b=b, test=test)


def expected(s, p_a, p_w, clip):
    return reference_line_scores(
        s.x.numpy(), s.y.numpy(), s.w.numpy(), s.b.numpy(), s.test.numpy(), p_a, p_w, clip
    )


@pytest.mark.parametrize("p_a, p_w, clip", SETTINGS)
def test_float64_matches_reference(ref, p_a, p_w, clip):
    det = LINe(None, ref.w, ref.b, p_a=p_a, p_w=p_w, clip=clip)
    det.fit_features(ref.x, ref.y)
    scores = det.predict_features(ref.test.double()).numpy()
    np.testing.assert_allclose(scores, expected(ref, p_a, p_w, clip), rtol=1e-12)


@pytest.mark.parametrize("p_a, p_w, clip", SETTINGS)
def test_float32_matches_reference(ref, p_a, p_w, clip):
    det = LINe(None, ref.w, ref.b, p_a=p_a, p_w=p_w, clip=clip)
    det.fit_features(ref.x, ref.y)
    scores = det.predict_features(ref.test)
    assert scores.dtype == torch.float32
    np.testing.assert_allclose(scores.numpy(), expected(ref, p_a, p_w, clip), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_are_scored_in_float32(ref, dtype):
    det = LINe(None, ref.w, ref.b).fit_features(ref.x, ref.y)
    low = ref.test.to(dtype)
    scores = det.predict_features(low)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, det.predict_features(low.float()))


def test_pruning_changes_the_score(ref):
    # guards against a detector that ignores its masks
    plain = LINe(None, ref.w, ref.b, p_a=0, p_w=0, clip=None).fit_features(ref.x, ref.y)
    pruned = LINe(None, ref.w, ref.b, p_a=0.5, p_w=0.5, clip=None)
    pruned.fit_features(ref.x, ref.y)
    diff = plain.predict_features(ref.test) - pruned.predict_features(ref.test)
    assert diff.abs().min().item() > 1e-3


def test_ignores_ood_labels(ref):
    y = ref.y.clone()
    x = torch.cat([ref.x, 100 * torch.ones(5, 13)])
    y = torch.cat([y, -torch.ones(5, dtype=torch.long)])
    a = LINe(None, ref.w, ref.b).fit_features(x, y)
    b = LINe(None, ref.w, ref.b).fit_features(ref.x, ref.y)
    torch.testing.assert_close(a.class_means, b.class_means)


# --- special cases


@pytest.fixture
def special():
    x, y, w, b = problem_of(5, 9, seed=3)
    test = torch.relu(torch.randn(40, 9, generator=torch.Generator().manual_seed(4)) * 3)
    return SimpleNamespace(x=x, y=y, w=w, b=b, test=test)


def test_all_off_is_energy(special):
    s = special
    det = LINe(None, s.w, s.b, p_a=0, p_w=0, clip=None).fit_features(s.x, s.y)
    logits = s.test @ s.w.T + s.b
    torch.testing.assert_close(det.predict_features(s.test), EnergyBased.score(logits))


def test_clip_only_is_react(special):
    s = special
    clip = 0.7
    det = LINe(None, s.w, s.b, p_a=0, p_w=0, clip=clip).fit_features(s.x, s.y)
    react = ReAct(
        backbone=lambda x: x,
        head=lambda f: f.flatten(1) @ s.w.T + s.b,
        threshold=clip,
    )
    expected = react.predict_feature_maps(s.test[:, :, None, None])
    torch.testing.assert_close(det.predict_features(s.test), expected)
    # the clip matters on these features
    unclipped = LINe(None, s.w, s.b, p_a=0, p_w=0, clip=None)
    unclipped.fit_features(s.x, s.y)
    assert not torch.allclose(unclipped.predict_features(s.test), expected)


def test_fraction_zero_keeps_the_minimum(special):
    s = special
    # the literal rule "> 0-quantile" would drop the smallest contribution
    det = LINe(None, s.w, s.b, p_a=0, p_w=0, clip=None).fit_features(s.x, s.y)
    assert det.activation_keep.all()
    assert torch.isneginf(det.weight_threshold).all()


def test_mask_fractions(special):
    s = special
    det = LINe(None, s.w, s.b, p_a=0.5, p_w=0.9, clip=None).fit_features(s.x, s.y)
    kept_neurons = det.activation_keep.sum(dim=1)
    assert (kept_neurons == 4).all(), kept_neurons  # 9 neurons, > median
    kept = (s.w[None] > det.weight_threshold[:, None, :].float()).sum(dim=(1, 2))
    assert (kept == 5).all(), kept  # 45 weights: > the 0.9-quantile (at 39.6): 5


# --- fitting and hyperparameters


@pytest.fixture
def fit_state():
    x, y, w, b = problem(0, n=400)
    test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(2)))
    return SimpleNamespace(x=x, y=y, w=w, b=b, test=test)


def test_fit_loader_equals_fit_features(fit_state):
    s = fit_state
    encoder = torch.nn.Identity()
    loader = DataLoader(TensorDataset(s.x, s.y), batch_size=32)
    a = LINe(encoder, s.w, s.b).fit(loader)
    b = LINe(None, s.w, s.b).fit_features(s.x, s.y)
    torch.testing.assert_close(a.class_means, b.class_means, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(a.predict_features(s.test), b.predict_features(s.test))
    torch.testing.assert_close(a.predict(s.test), b.predict_features(s.test))


@pytest.mark.parametrize(
    "change", [{"p_a": 0.2}, {"p_w": 0.3}, {"clip": 0.5}, {"p_a": 0.0, "p_w": 0.0}]
)
def test_changes_after_fit_equal_a_fresh_fit(fit_state, change):
    s = fit_state
    moved = LINe(None, s.w, s.b, p_a=0.9, p_w=0.9, clip=1.0)
    moved.fit_features(s.x, s.y)
    moved.predict_features(s.test)  # derive the first masks
    moved.set_hyperparameters(**change)
    params = {"p_a": 0.9, "p_w": 0.9, "clip": 1.0, **change}
    fresh = LINe(None, s.w, s.b, **params).fit_features(s.x, s.y)
    torch.testing.assert_close(moved.predict_features(s.test), fresh.predict_features(s.test))


def test_attribute_assignment_rederives(fit_state):
    s = fit_state
    det = LINe(None, s.w, s.b, p_w=0.9).fit_features(s.x, s.y)
    before = det.predict_features(s.test)
    det.p_w = 0.2
    fresh = LINe(None, s.w, s.b, p_w=0.2).fit_features(s.x, s.y)
    torch.testing.assert_close(det.predict_features(s.test), fresh.predict_features(s.test))
    assert not torch.allclose(before, det.predict_features(s.test))


# --- pytorch-ood conventions


@pytest.fixture
def conv():
    x, y, w, b = problem(0, n=400)
    test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(7)))
    return SimpleNamespace(x=x, y=y, w=w, b=b, test=test)


def test_integral_float_labels_are_labels(conv):
    s = conv
    # pytorch-ood's own tests pass float labels such as torch.zeros(n)
    y = s.y.clone()
    y[:20] = -1  # OOD samples are ignored, float or not
    ints = LINe(None, s.w, s.b).fit_features(s.x, y)
    floats = LINe(None, s.w, s.b).fit_features(s.x, y.float())
    assert torch.equal(ints.class_means, floats.class_means)
    assert torch.equal(ints.class_counts, floats.class_counts)


def test_detector_scores_the_pruned_logits(conv):
    s = conv
    det = LINe(None, s.w, s.b, p_a=0.5, p_w=0.5, detector=lambda z: -z.max(dim=1).values)
    det.fit_features(s.x, s.y)
    z = det.pruned_logits(s.test)
    assert torch.equal(det.predict_features(s.test), -z.max(dim=1).values)
    energy = LINe(None, s.w, s.b, p_a=0.5, p_w=0.5).fit_features(s.x, s.y)
    assert torch.equal(energy.pruned_logits(s.test), z)
    assert torch.equal(energy.predict_features(s.test), EnergyBased.score(z))


# --- upstream conventions


@pytest.fixture
def upstream():
    x, y, w, b = problem(0, n=400)
    det = LINe(None, w, b, p_a=0.5, p_w=0.5).fit_features(x, y)
    return SimpleNamespace(x=x, y=y, w=w, b=b, det=det)


def test_nan_in_nan_out(upstream):
    # as its pytorch-ood neighbours: no check (and no device sync) per batch
    x = torch.relu(torch.randn(6, 13, generator=torch.Generator().manual_seed(3)))
    x[2, 4] = float("nan")
    scores = upstream.det.predict_features(x)
    assert torch.isnan(scores[2])
    assert torch.isfinite(scores[[0, 1, 3, 4, 5]]).all()
    torch.testing.assert_close(scores[[0, 1]], upstream.det.predict_features(x[[0, 1]]))


def test_statistics_stay_float64_on_the_cpu_and_scoring_casts(upstream):
    det = upstream.det
    det.to("cpu")
    assert det.device == torch.device("cpu")
    det.predict_features(upstream.x[:5])
    for name in ("weight", "bias", "class_means", "weight_threshold"):
        assert getattr(det, name).dtype == torch.float64, name
    held = [t for t in vars(det).values() if isinstance(t, torch.Tensor)]
    assert all(t.device.type == "cpu" for t in held)
    casts = det._derived[4]  # what scoring float32 features used
    assert list(casts) == [(torch.float32, torch.device("cpu"))]
    assert all(t.dtype in (torch.float32, torch.bool) for t in casts[list(casts)[0]])


def test_assigned_class_means_restore_a_fitted_detector(upstream):
    s = upstream
    other = LINe(None, s.w, s.b, p_a=0.5, p_w=0.5)
    other.class_means = s.det.class_means.clone()
    other.class_counts = s.det.class_counts.clone()
    assert torch.equal(other.weight_threshold, s.det.weight_threshold)
    assert torch.equal(other.predict_features(s.x), s.det.predict_features(s.x))


def test_small_hyperparameter_space():
    sizes = [len(values) for values in LINe.hyperparameter_space.values()]
    assert int(np.prod(sizes)) <= 8  # DICE and ReAct: at most 8 candidates


def test_class_without_sample(upstream):
    s = upstream
    y = s.y.clone()
    y[y == 2] = 1
    with pytest.raises(ValueError, match="class"):
        LINe(None, s.w, s.b).fit_features(s.x, y)


def test_not_fitted(upstream):
    from pytorch_ood.api import RequiresFittingException

    with pytest.raises(RequiresFittingException):
        LINe(None, upstream.w, upstream.b).predict_features(upstream.x)
