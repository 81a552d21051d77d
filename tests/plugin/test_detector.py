"""
The plugin layer's conveniences: presets, ``clip_quantile``, state files with metadata (and the
files version 0.2 wrote), the warning on signed features, its own ``info``, and that it uses
only what the upstream detector documents as public.
"""

import ast
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from golden.make_state_0_3_0_synthetic import SETTING as SETTING_0_3_0
from golden.make_state_0_3_0_synthetic import digest
from golden.make_state_0_3_0_synthetic import test_inputs as state_test_inputs
from pytorch_ood.api import DetectorInfo
from synthetic import problem, rounding_bound

import line_plugin.core.line as core_module
from line_plugin import PRESETS, LINe
from line_plugin.core import LINe as CoreLINe
from line_plugin.plugin import read_state
from line_plugin.plugin.state import FILE_VERSION, STATE_VERSION

GOLDEN = Path(__file__).parents[1] / "golden"
PLUGIN = Path(__file__).parents[2] / "line_plugin" / "plugin"


@pytest.fixture
def data():
    x, y, w, b = problem(0, n=400)
    test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(5)))
    return x, y, w, b, test


@pytest.fixture
def fitted(data):
    x, y, w, b, _ = data
    return LINe(None, w, b, p_a=0.3, p_w=0.6, clip=1.5).fit_features(x, y)


def test_clip_quantile(data):
    x, y, w, b, _ = data
    det = LINe(None, w, b, clip=None, clip_quantile=0.9).fit_features(x, y)
    assert det.clip == pytest.approx(float(np.quantile(x.numpy(), 0.9)), abs=1e-6)
    det.clip_quantile = 0.5
    assert det.clip == pytest.approx(float(np.quantile(x.numpy(), 0.5)), abs=1e-6)
    det.clip = 2.0  # an absolute clip replaces the quantile
    assert det.clip_quantile is None


def test_hyperparameters_are_the_current_values_and_set_them_back(data):
    x, y, w, b, _ = data
    det = LINe(None, w, b, p_a=0.3, p_w=0.6, clip=None, clip_quantile=0.5).fit_features(x, y)
    hp = det.hyperparameters
    assert hp == {"p_a": 0.3, "p_w": 0.6, "clip": det.clip, "clip_quantile": 0.5}
    assert hp["clip"] == pytest.approx(float(np.quantile(x.numpy(), 0.5)), abs=1e-6)
    other = LINe(None, w, b).fit_features(x, y).set_hyperparameters(**hp)
    assert other.hyperparameters == hp
    assert torch.equal(other.predict_features(x), det.predict_features(x))


@pytest.mark.parametrize(
    "change",
    [{"p_a": 0.2}, {"p_w": 0.3}, {"p_a": 0.9, "p_w": 0.1, "clip": 0.5}, {"p_a": 0.0, "p_w": 0.0}],
)
def test_new_hyperparameters_derive_the_masks_of_a_fresh_fit(data, change, monkeypatch):
    # without data, from the exact class means: the masks of a fit with those hyperparameters
    x, y, w, b, test = data
    det = LINe(None, w, b, p_a=0.5, p_w=0.5, clip=1.0).fit_features(x, y)
    derived = []
    original = CoreLINe.fit_features
    monkeypatch.setattr(CoreLINe, "fit_features", lambda *a: derived.append(1) or original(*a))
    det.set_hyperparameters(**change)
    assert len(derived) == 1  # once for both fractions
    monkeypatch.undo()
    fresh = LINe(None, w, b, **{"p_a": 0.5, "p_w": 0.5, "clip": 1.0, **change})
    fresh.fit_features(x, y)
    assert torch.equal(det.activation_keep, fresh.activation_keep)
    assert torch.equal(det.weight_threshold, fresh.weight_threshold)
    assert torch.equal(det.predict_features(test), fresh.predict_features(test))
    # an attribute set on its own derives them too
    det.p_w = 0.7
    again = LINe(None, w, b, **{**fresh.get_hyperparameters(), "p_w": 0.7}).fit_features(x, y)
    assert torch.equal(det.weight_threshold, again.weight_threshold)


def test_shape_properties(data):
    _, _, w, b, _ = data
    det = LINe(None, w, b)
    assert (det.num_classes, det.num_features) == tuple(w.shape)


def test_presets(data):
    _, _, w, b, _ = data
    assert PRESETS["cifar10"] == {"p_w": 0.9, "p_a": 0.9, "clip": 1.0}
    assert PRESETS["cifar100"] == {"p_w": 0.9, "p_a": 0.1, "clip": 1.0}
    assert PRESETS["imagenet"] == {"p_w": 0.1, "p_a": 0.1, "clip": 0.8}
    det = LINe.from_preset("imagenet", None, w, b)
    assert det.get_hyperparameters() == {"p_a": 0.1, "p_w": 0.1, "clip": 0.8}
    with pytest.raises(ValueError, match="unknown preset"):
        LINe.from_preset("svhn", None, w, b)


def test_own_info():
    assert "info" in vars(LINe) and isinstance(LINe.info, DetectorInfo)
    assert LINe.info.paper == CoreLINe.info.paper and LINe.info.tasks == CoreLINe.info.tasks


def test_file_round_trip(tmp_path, fitted, data):
    test = data[4]
    fitted.save(tmp_path / "line.pt")
    other = LINe(None, data[2], data[3]).load(tmp_path / "line.pt")
    assert torch.equal(other.predict_features(test), fitted.predict_features(test))
    assert other.get_hyperparameters() == fitted.get_hyperparameters()


def test_metadata_and_atomic_write(tmp_path, fitted, data):
    path = tmp_path / "line.pt"
    fitted.save(path, backbone="resnet18", classes=["a", "b"], threshold=0.5)
    fitted.save(path, backbone="resnet50")  # replaced whole, no temporary left
    state, metadata = read_state(path)
    assert metadata == {"backbone": "resnet50"}
    payload = torch.load(path, weights_only=True)  # file version 1 around state version 2
    assert (payload["version"], state["version"]) == (FILE_VERSION, STATE_VERSION) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.pt"]
    loaded = LINe(None, data[2], data[3]).load_state_dict(state)
    assert torch.equal(loaded.predict_features(data[4]), fitted.predict_features(data[4]))


def test_a_state_file_of_version_0_2_loads_exactly(data):
    # written by line_plugin 0.2.0 (before the core became the ~250-line upstream module):
    # LINe(None, w, b, p_a=0.3, p_w=0.6, clip=None, clip_quantile=0.9) fitted on problem(0)
    x, y, w, b, test = data
    old = LINe(None, w, b).load(GOLDEN / "state_0_2_0.pt")
    fresh = LINe(None, w, b, p_a=0.3, p_w=0.6, clip=None, clip_quantile=0.9).fit_features(x, y)
    assert old.clip == fresh.clip and old.clip_quantile == 0.9
    assert torch.equal(old.class_means, fresh.class_means)
    assert torch.equal(old.class_counts, fresh.class_counts)
    assert torch.equal(old.activation_sample, fresh.activation_sample)
    assert torch.equal(old.weight_threshold, fresh.weight_threshold)
    assert torch.equal(old.predict_features(test), fresh.predict_features(test))
    assert read_state(GOLDEN / "state_0_2_0.pt")[1]["backbone"] == "synthetic"


def test_a_state_file_of_version_0_3_loads_exactly(data):
    # written by line_plugin 0.3.0 (float64 weights and masks) with its masks' digests and its
    # scores: tests/golden/make_state_0_3_0_synthetic.py
    x, y, w, b, _ = data
    state, metadata = read_state(GOLDEN / "state_0_3_0.pt")
    assert metadata["version"] == "0.3.0" and state["class_means"].dtype == torch.float64
    old = LINe(None, w, b).load(GOLDEN / "state_0_3_0.pt")
    assert old.hyperparameters == state["hyperparameters"]
    assert digest(old.activation_keep) == metadata["activation_keep_sha256"]
    assert digest(old.weight_threshold.double()) == metadata["weight_threshold_sha256"]
    fresh = LINe(None, w, b, **SETTING_0_3_0).fit_features(x, y)
    assert torch.equal(old.weight_threshold, fresh.weight_threshold)
    test = state_test_inputs()
    for dtype, key in ((torch.float32, "scores32"), (torch.float64, "scores64")):
        stored = torch.tensor(metadata[key], dtype=dtype)
        scores = old.predict_features(test.to(dtype))
        bound, clear = rounding_bound(old, test.to(dtype), stored, dtype)
        assert clear.all() and ((scores.double() - stored.double()).abs() <= bound).all()


def test_an_unknown_state_version_says_how_to_refit(fitted, data):
    state = fitted.state_dict()
    state["version"] = 3
    with pytest.raises(ValueError, match=r"version 3.*fit the detector again"):
        LINe(None, data[2], data[3]).load_state_dict(state)


def test_missing_file(data):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LINe(None, data[2], data[3]).load("/nonexistent/line.pt")


def test_warns_on_signed_features_with_masks(data, caplog):
    x, y, w, b, _ = data
    with caplog.at_level(logging.WARNING, logger="line_plugin.plugin.detector"):
        LINe(None, w, b, p_a=0.9, p_w=0.9).fit_features(x - x.mean(), y)
    assert "% of the training activations are negative" in caplog.text
    assert "preset='auto'" in caplog.text  # the remedy is named


def test_no_warning_for_post_relu_features_or_without_masks(data, caplog):
    x, y, w, b, _ = data
    with caplog.at_level(logging.WARNING, logger="line_plugin.plugin.detector"):
        LINe(None, w, b, p_a=0.9, p_w=0.9).fit_features(x, y)
        LINe(None, w, b, p_a=0, p_w=0, clip=None).fit_features(x - x.mean(), y)
    assert "negative" not in caplog.text


def _core_private_names() -> set:
    """the private names the core module defines: functions, methods and attributes"""
    tree = ast.parse(Path(core_module.__file__).read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {
        t.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Attribute)
    }
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_the_plugin_uses_only_the_public_api_of_the_core():
    # so that it runs unchanged on top of pytorch_ood.detector.LINe; the core's private names
    # are listed here, and none may appear in the plugin's modules
    private = _core_private_names()
    assert {"_fit", "_fractions", "_weight_thresholds"} <= private
    for path in PLUGIN.glob("*.py"):
        used = set(re.findall(r"\b_\w+", path.read_text()))
        assert not used & private, f"{path.name} uses the core's private {used & private}"
    for name in ("activation_keep", "weight_threshold"):  # the masks, public attributes
        assert name in CoreLINe.__doc__
    assert "pruned logits" in CoreLINe.pruned_logits.__doc__
