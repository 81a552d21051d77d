"""
Every later version computes what version 0.1 computed: class means, activation masks, weight
thresholds and clips of ``line_plugin.LINe`` and of the upstream module, bit for bit, against the
values that commit 57bd2ad computed (``tests/golden/golden.pt``, made by
``tests/golden/make_golden.py``) on features of the four shared CIFAR-10 models and on an
ImageNet-sized synthetic head.

The thresholds are weights, now held in the head's dtype (float32); widened to float64, as 0.1
held them, their bytes are compared. The stored scores are compared within the rounding of their
dtype: another CPU's BLAS sums the D products of a logit in another order, which moves a logit by
at most ``(D + 1) u`` times the sum of the magnitudes of its terms (``u`` the unit roundoff of
float32 or float64), and the energy, 1-Lipschitz in the logits, by as much plus its own
``(K + 8) u + 2 u |score|`` (:func:`synthetic.rounding_bound`). Rows whose two largest logits are
closer than twice that could pick another class there and are left out; on this machine every
score is the stored one.
"""

from pathlib import Path

import pytest
import torch
from golden.make_golden import digest, imagenet_inputs
from synthetic import rounding_bound

from line_plugin import LINe
from line_plugin.core import LINe as CoreLINe

pytestmark = pytest.mark.slow  # seconds per case (the ImageNet-sized head: minutes)

GOLDEN = torch.load(Path(__file__).parents[1] / "golden" / "golden.pt", weights_only=True)
CASES = [
    (model, setting) for model, entry in GOLDEN["models"].items() for setting in entry["outputs"]
]


def assert_scores(det, x, scores, stored):
    """``scores`` of features ``x`` are the ``stored`` ones, within the rounding of their dtype"""
    assert scores.dtype == stored.dtype
    bound, clear = rounding_bound(det, x, stored, stored.dtype)
    error = (scores.double() - stored.double()).abs()
    assert (error <= bound)[clear].all(), float((error - bound).max())
    assert clear.float().mean() > 0.9  # near ties are rare


@pytest.mark.parametrize("model,setting", CASES)
def test_shared_model_features(model, setting):
    entry = GOLDEN["models"][model]
    expected = entry["outputs"][setting]
    x_fit, x_test = entry["x_fit"].float(), entry["x_test"]
    det = LINe(None, entry["weight"], entry["bias"], **expected["hyperparameters"])
    det.fit_features(x_fit, entry["y_fit"])
    assert digest(det.class_means) == expected["class_means_sha256"]
    assert det.clip == expected["clip"]
    x32, x64 = x_test.float(), x_test.double()
    assert_scores(det, x32, det.predict_features(x32), expected["scores32"])
    assert_scores(det, x64, det.predict_features(x64), expected["scores64"])
    assert digest(det.activation_keep) == expected["activation_keep_sha256"]
    assert digest(det.weight_threshold.double()) == expected["weight_threshold_sha256"]


@pytest.mark.parametrize("model", list(GOLDEN["models"]))
def test_core_detector_is_the_same(model):
    """the upstream module alone, with the clip that the plugin fitted as a quantile: the masks
    and thresholds of version 0.1"""
    entry = GOLDEN["models"][model]
    for setting, expected in entry["outputs"].items():
        hp = {k: v for k, v in expected["hyperparameters"].items() if k != "clip_quantile"}
        hp["clip"] = expected["clip"]
        det = CoreLINe(None, entry["weight"], entry["bias"], **hp)
        det.fit_features(entry["x_fit"].float(), entry["y_fit"])
        x32 = entry["x_test"].float()
        assert_scores(det, x32, det.predict_features(x32), expected["scores32"])
        assert digest(det.activation_keep) == expected["activation_keep_sha256"], setting
        assert digest(det.weight_threshold.double()) == expected["weight_threshold_sha256"], (
            setting
        )


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
        assert digest(det.weight_threshold.double()) == expected["weight_threshold_sha256"]
        x64 = x_test.double()
        assert_scores(det, x64, det.predict_features(x64), expected["scores64"])
