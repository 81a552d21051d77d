"""
The core detector (the upstream module) against an independent per-sample float64 reference, on
float64 and float32 features; its special cases (Energy, ReAct), hyperparameter changes,
pytorch-ood's conventions (labels, the ``detector`` argument, NaN in and NaN out, the device and
dtype of its state), its decided errors and its edge cases, on synthetic tensors.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_ood.api import ModelNotSetException, RequiresFittingException
from pytorch_ood.detector import ReAct
from pytorch_ood.detector.energy import EnergyBased
from pytorch_ood.metrics import OODMetrics
from reference import reference_line_scores, reference_masks
from synthetic import problem
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from line_plugin.core import LINe


def problem_of(num_classes, num_features, seed, n=400):
    """the problem of tests/synthetic.py, of another size"""
    return problem(seed, n=n, num_classes=num_classes, num_features=num_features)


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


def tensors(det: LINe) -> dict:
    return {name: t for name, t in vars(det).items() if isinstance(t, Tensor)}


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


def assert_reference_masks(det, s, p_a, p_w):
    keep, masks = reference_masks(s.x.numpy(), s.y.numpy(), s.w.numpy(), p_a, p_w)
    np.testing.assert_array_equal(det.activation_keep.numpy(), keep)
    kept = det.weight[None] > det.weight_threshold[:, None, :]
    np.testing.assert_array_equal(kept.numpy(), masks)


@pytest.mark.parametrize("p_a, p_w, clip", SETTINGS)
def test_float64_matches_reference(ref, p_a, p_w, clip):
    det = LINe(None, ref.w, ref.b, p_a=p_a, p_w=p_w, clip=clip)
    det.fit_features(ref.x.double(), ref.y)
    assert_reference_masks(det, ref, p_a, p_w)
    scores = det.predict_features(ref.test.double())
    assert scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), expected(ref, p_a, p_w, clip), rtol=1e-12)


@pytest.mark.parametrize("p_a, p_w, clip", SETTINGS)
def test_float32_matches_reference(ref, p_a, p_w, clip):
    # fitted on float32 features: the same masks as the float64 reference, bit for bit, and
    # float32 scores to float32 rounding
    det = LINe(None, ref.w, ref.b, p_a=p_a, p_w=p_w, clip=clip)
    det.fit_features(ref.x, ref.y)
    assert_reference_masks(det, ref, p_a, p_w)
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
    x = torch.cat([ref.x, 100 * torch.ones(5, 13)])
    y = torch.cat([ref.y, -torch.ones(5, dtype=torch.long)])
    a = LINe(None, ref.w, ref.b).fit_features(x, y)
    b = LINe(None, ref.w, ref.b).fit_features(ref.x, ref.y)
    assert torch.equal(a.activation_keep, b.activation_keep)
    assert torch.equal(a.weight_threshold, b.weight_threshold)


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
    # the literal rule "> 0-quantile" (the authors' percentile 0) would drop the smallest one
    det = LINe(None, s.w, s.b, p_a=0, p_w=0, clip=None).fit_features(s.x, s.y)
    assert det.activation_keep.all()
    assert torch.isneginf(det.weight_threshold).all()


def test_fraction_one_keeps_nothing(special):
    s = special
    det = LINe(None, s.w, s.b, p_a=1.0, p_w=1.0, clip=None).fit_features(s.x, s.y)
    assert not det.activation_keep.any()
    assert torch.equal(det.pruned_logits(s.test), s.b.expand(len(s.test), -1))


def test_mask_fractions(special):
    s = special
    det = LINe(None, s.w, s.b, p_a=0.5, p_w=0.9, clip=None).fit_features(s.x, s.y)
    kept_neurons = det.activation_keep.sum(dim=1)
    assert (kept_neurons == 4).all(), kept_neurons  # 9 neurons, > median
    kept = (s.w[None] > det.weight_threshold[:, None, :]).sum(dim=(1, 2))
    assert (kept == 5).all(), kept  # 45 weights: > the 0.9-quantile (at 39.6): 5


# --- fitting and hyperparameters


@pytest.fixture
def fit_state():
    x, y, w, b = problem(0, n=400)
    test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(2)))
    return SimpleNamespace(x=x, y=y, w=w, b=b, test=test)


def test_fit_loader_equals_fit_features(fit_state):
    s = fit_state
    loader = DataLoader(TensorDataset(s.x, s.y), batch_size=32)
    a = LINe(nn.Identity(), s.w, s.b).fit(loader)
    b = LINe(None, s.w, s.b).fit_features(s.x, s.y)
    assert torch.equal(a.activation_keep, b.activation_keep)
    assert torch.equal(a.weight_threshold, b.weight_threshold)
    torch.testing.assert_close(a.predict_features(s.test), b.predict_features(s.test))
    torch.testing.assert_close(a.predict(s.test), b.predict_features(s.test))


def test_encoder_feature_maps_are_flattened(fit_state):
    # an encoder of B x C x 1 x 1 outputs, as pytorch-ood's extract_features flattens them
    s = fit_state
    maps = DataLoader(TensorDataset(s.x[:, :, None, None], s.y), batch_size=32)
    det = LINe(nn.Identity(), s.w, s.b).fit(maps)
    flat = LINe(None, s.w, s.b).fit_features(s.x, s.y)
    assert torch.equal(det.weight_threshold, flat.weight_threshold)
    assert torch.equal(det.predict(s.test[:, :, None, None]), flat.predict_features(s.test))


@pytest.mark.parametrize("change", [{"p_a": 0.2}, {"p_w": 0.3}, {"p_a": 0.0, "p_w": 0.0}])
def test_new_fractions_need_a_new_fit(fit_state, change):
    s = fit_state
    det = LINe(None, s.w, s.b, p_a=0.9, p_w=0.9, clip=1.0).fit_features(s.x, s.y)
    det.set_hyperparameters(**change)
    with pytest.raises(RequiresFittingException, match="fit"):
        det.predict_features(s.test)
    det.fit_features(s.x, s.y)
    fresh = LINe(None, s.w, s.b, **{"p_a": 0.9, "p_w": 0.9, "clip": 1.0, **change})
    fresh.fit_features(s.x, s.y)
    assert torch.equal(det.weight_threshold, fresh.weight_threshold)
    assert torch.equal(det.predict_features(s.test), fresh.predict_features(s.test))


def test_a_new_clip_applies_at_once(fit_state):
    s = fit_state
    det = LINe(None, s.w, s.b, clip=1.0).fit_features(s.x, s.y)
    before = det.predict_features(s.test)
    det.set_hyperparameters(clip=0.5)
    fresh = LINe(None, s.w, s.b, clip=0.5).fit_features(s.x, s.y)
    assert torch.equal(det.predict_features(s.test), fresh.predict_features(s.test))
    assert not torch.equal(before, fresh.predict_features(s.test))


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
    assert torch.equal(ints.weight_threshold, floats.weight_threshold)
    assert torch.equal(ints.predict_features(s.test), floats.predict_features(s.test))


def test_detector_scores_the_pruned_logits(conv):
    s = conv
    det = LINe(None, s.w, s.b, p_a=0.5, p_w=0.5, detector=lambda z: -z.max(dim=1).values)
    det.fit_features(s.x, s.y)
    z = det.pruned_logits(s.test)
    assert torch.equal(det.predict_features(s.test), -z.max(dim=1).values)
    energy = LINe(None, s.w, s.b, p_a=0.5, p_w=0.5).fit_features(s.x, s.y)
    assert torch.equal(energy.pruned_logits(s.test), z)
    assert torch.equal(energy.predict_features(s.test), EnergyBased.score(z))


def test_nan_in_nan_out(conv):
    # as its pytorch-ood neighbours: no check (and no device sync) per batch when scoring
    det = LINe(None, conv.w, conv.b, p_a=0.5, p_w=0.5).fit_features(conv.x, conv.y)
    x = torch.relu(torch.randn(6, 13, generator=torch.Generator().manual_seed(3)))
    x[2, 4] = float("nan")
    scores = det.predict_features(x)
    assert torch.isnan(scores[2])
    assert torch.isfinite(scores[[0, 1, 3, 4, 5]]).all()
    torch.testing.assert_close(scores[[0, 1]], det.predict_features(x[[0, 1]]))


def test_small_hyperparameter_space():
    sizes = [len(values) for values in LINe.hyperparameter_space.values()]
    assert int(np.prod(sizes)) <= 8  # DICE and ReAct: at most 8 candidates


# --- the state: its dtype, and devices


def test_a_float32_fit_holds_float32_state(conv):
    det = LINe(nn.Identity(), conv.w, conv.b).fit_features(conv.x, conv.y)
    det.predict_features(conv.test.double())  # float64 scoring caches nothing
    held = tensors(det)
    assert set(held) == {"weight", "bias", "activation_keep", "weight_threshold"}
    assert {t.dtype for t in held.values()} == {torch.float32, torch.bool}
    # the head is a copy: training the model on does not change the detector
    assert held["weight"].data_ptr() != conv.w.data_ptr()


def test_a_float64_head_keeps_float64(conv):
    det = LINe(None, conv.w.double(), conv.b.double()).fit_features(conv.x, conv.y)
    assert det.weight_threshold.dtype == det.weight.dtype == torch.float64
    half = LINe(None, conv.w.half(), conv.b.half())
    assert half.weight.dtype == half.bias.dtype == torch.float32


def test_to_moves_every_tensor(conv):
    # the meta device stands for any other device: every fitted tensor and the encoder move
    encoder = nn.Linear(13, 13)
    det = LINe(encoder, conv.w, conv.b).fit_features(conv.x, conv.y)
    assert det.to("meta") is det and det.device == torch.device("meta")
    assert all(t.device.type == "meta" for t in tensors(det).values())
    assert encoder.weight.device.type == "meta"
    cpu = LINe(None, conv.w, conv.b).fit_features(conv.x, conv.y)
    threshold = cpu.weight_threshold
    assert cpu.to("cpu").weight_threshold is threshold  # no copy where it already is


def test_predict_features_goes_through_pytorch_oods_device_wrapper(conv):
    det = LINe(None, conv.w, conv.b).fit_features(conv.x, conv.y)
    calls = []
    original = LINe._move_tensor_arguments_to_device

    def spy(args, kwargs, device):
        calls.append(device)
        return original(args, kwargs, device)

    LINe._move_tensor_arguments_to_device = staticmethod(spy)
    try:
        det.predict_features(conv.test)
    finally:
        LINe._move_tensor_arguments_to_device = staticmethod(original)
    assert calls == [torch.device("cpu")]  # pytorch-ood's wrapper moves them


# --- decided errors


@pytest.fixture
def errs():
    x, y, w, b = problem(0, n=70)
    return SimpleNamespace(x=x, y=y, w=w, b=b)


def test_class_without_sample_is_named(errs):
    y = errs.y.clone()
    y[(y == 2) | (y == 5)] = 1
    with pytest.raises(ValueError, match=r"no training sample of class\(es\) \[2, 5\]"):
        LINe(None, errs.w, errs.b).fit_features(errs.x, y)


def test_label_out_of_range(errs):
    y = errs.y.clone()
    y[3] = 7
    with pytest.raises(ValueError, match="label 7 is out of range for 7 classes"):
        LINe(None, errs.w, errs.b).fit_features(errs.x, y)


def test_features_of_another_width(errs):
    with pytest.raises(ValueError, match="features of width 12, but w has 13 columns"):
        LINe(None, errs.w, errs.b).fit_features(errs.x[:, :12], errs.y)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_in_fit_name_the_class(errs, bad):
    x = errs.x.clone()
    x[10, 3] = bad  # a sample of class 3
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] contain NaN or infinite"):
        LINe(None, errs.w, errs.b).fit_features(x, errs.y)


def test_not_fitted(errs):
    with pytest.raises(RequiresFittingException):
        LINe(None, errs.w, errs.b).predict_features(errs.x)


def test_no_encoder(errs):
    det = LINe(None, errs.w, errs.b).fit_features(errs.x, errs.y)
    with pytest.raises(ModelNotSetException):
        det.predict(errs.x)
    with pytest.raises(ModelNotSetException):
        det.fit(DataLoader(TensorDataset(errs.x, errs.y)))


# --- edge cases


@pytest.mark.parametrize("k, d", [(1, 6), (4, 1), (1, 1)])
@pytest.mark.parametrize("p_a, p_w, clip", [(0.5, 0.5, 1.0), (1.0, 1.0, None), (0.9, 0.1, 0.8)])
def test_one_class_or_one_feature(k, d, p_a, p_w, clip):
    x, y, w, b = problem_of(k, d, seed=5, n=40)
    test = torch.relu(torch.randn(9, d, generator=torch.Generator().manual_seed(6)))
    s = SimpleNamespace(x=x, y=y, w=w, b=b, test=test)
    det = LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip).fit_features(x, y)
    assert_reference_masks(det, s, p_a, p_w)
    scores = det.predict_features(test.double()).numpy()
    np.testing.assert_allclose(scores, expected(s, p_a, p_w, clip), rtol=1e-12)


def test_empty_batches(conv):
    det = LINe(nn.Identity(), conv.w, conv.b, p_a=0.5, p_w=0.5).fit_features(conv.x, conv.y)
    for dtype in (torch.float32, torch.float64):
        scores = det.predict_features(torch.zeros(0, 13, dtype=dtype))
        assert scores.shape == (0,) and scores.dtype == dtype
    # an empty batch, and one of OOD samples only, in a loader: nothing to add
    batches = [(conv.x[:0], conv.y[:0]), (conv.x[:5], -torch.ones(5)), (conv.x, conv.y)]
    again = LINe(nn.Identity(), conv.w, conv.b, p_a=0.5, p_w=0.5).fit(batches)
    assert torch.equal(again.weight_threshold, det.weight_threshold)


def test_separates_a_toy_in_distribution_from_outliers():
    # ID: features near the positive centre of their class, through a head that reads them;
    # OOD: features of the same scale without a class pattern. LINe ranks nearly all OOD
    # samples above the ID samples, and does not do worse than the energy
    g = torch.Generator().manual_seed(0)
    k, d, n = 6, 40, 600
    centres = torch.rand(k, d, generator=g) * (torch.rand(k, d, generator=g) < 0.3) * 4
    w, b = centres / centres.norm(dim=1, keepdim=True), torch.zeros(k)
    y = torch.arange(n) % k
    x = torch.relu(centres[y] + 0.3 * torch.randn(n, d, generator=g))
    test_in = torch.relu(centres[y[:200]] + 0.3 * torch.randn(200, d, generator=g))
    test_out = torch.relu(torch.randn(200, d, generator=g) * 1.2)
    labels = torch.cat([torch.zeros(200), -torch.ones(200)]).long()

    def auroc(det):
        metrics = OODMetrics()
        metrics.update(det.predict_features(torch.cat([test_in, test_out])), labels)
        return metrics.compute()["AUROC"]

    line = LINe(None, w, b, p_a=0.5, p_w=0.5, clip=2.0).fit_features(x, y)
    energy = LINe(None, w, b, p_a=0.0, p_w=0.0, clip=None).fit_features(x, y)
    assert auroc(line) > 0.95 and auroc(line) >= auroc(energy)
