"""
The redesign computes what version 0.1 computed, bit for bit: class means, activation masks,
weight thresholds, clips and scores of ``line_plugin.LINe`` against the values that commit
57bd2ad computed (``tests/golden/golden.pt``, made by ``tests/golden/make_golden.py``) on
features of the four shared CIFAR-10 models and on an ImageNet-sized synthetic head.
"""

from pathlib import Path

import pytest
import torch
from golden.make_golden import digest, imagenet_inputs

from line_plugin import LINe
from line_plugin.core import LINe as CoreLINe

GOLDEN = torch.load(Path(__file__).parents[1] / "golden" / "golden.pt", weights_only=True)
CASES = [
    (model, setting) for model, entry in GOLDEN["models"].items() for setting in entry["outputs"]
]


@pytest.mark.parametrize("model,setting", CASES)
def test_shared_model_features(model, setting):
    entry = GOLDEN["models"][model]
    expected = entry["outputs"][setting]
    x_fit, x_test = entry["x_fit"].float(), entry["x_test"]
    det = LINe(None, entry["weight"], entry["bias"], **expected["hyperparameters"])
    det.fit_features(x_fit, entry["y_fit"])
    assert digest(det.class_means) == expected["class_means_sha256"]
    assert det.clip == expected["clip"]
    assert torch.equal(det.predict_features(x_test.float()), expected["scores32"])
    assert torch.equal(det.predict_features(x_test.double()), expected["scores64"])
    assert digest(det.activation_keep) == expected["activation_keep_sha256"]
    assert digest(det.weight_threshold) == expected["weight_threshold_sha256"]


@pytest.mark.parametrize("model", list(GOLDEN["models"]))
def test_core_detector_is_the_same(model):
    """the upstream module alone, with the clip that the plugin fitted as a quantile"""
    entry = GOLDEN["models"][model]
    for setting, expected in entry["outputs"].items():
        hp = {k: v for k, v in expected["hyperparameters"].items() if k != "clip_quantile"}
        hp["clip"] = expected["clip"]
        det = CoreLINe(None, entry["weight"], entry["bias"], **hp)
        det.fit_features(entry["x_fit"].float(), entry["y_fit"])
        assert torch.equal(det.predict_features(entry["x_test"].float()), expected["scores32"])
        assert digest(det.weight_threshold) == expected["weight_threshold_sha256"], setting


def test_imagenet_sized_head():
    """K = 1000, D = 2048: the selection route of the weight thresholds"""
    w, b, x, y, x_test = imagenet_inputs()
    golden = GOLDEN["imagenet_scale"]
    inputs = torch.cat([w.flatten(), b, x.flatten(), x_test.flatten()])
    assert digest(inputs) == golden["inputs_sha256"], "NumPy generated other inputs"
    for setting in ("imagenet", "cifar10"):
        expected = golden[setting]
        det = LINe(None, w, b, **expected["hyperparameters"]).fit_features(x, y)
        assert digest(det.activation_keep) == expected["activation_keep_sha256"]
        assert digest(det.weight_threshold) == expected["weight_threshold_sha256"]
        assert torch.equal(det.predict_features(x_test.double()), expected["scores64"])
