"""
pytorch-ood 0.4.0 patched with ``upstream/pytorch_ood_line.patch`` scores real features of the
shared DenseNet-BC-100 exactly as ``line_plugin.LINe`` does.
"""

import pytest
import torch
from realdata import densenet_features
from upstream_build import installed, run_python

from line_plugin import LINe

#: the paper's CIFAR-10 and CIFAR-100 settings, its ImageNet one, the energy and ReAct
SETTINGS = [(0.9, 0.9, 1.0), (0.1, 0.9, 1.0), (0.1, 0.1, 0.8), (0.0, 0.0, None), (0.0, 0.0, 1.0)]

SCRIPT = """
import sys
import pytorch_ood
import torch
from pytorch_ood.detector import LINe

features, target, out = sys.argv[1:]
assert pytorch_ood.__file__.startswith(target), pytorch_ood.__file__
d = torch.load(features)
results = []
for p_a, p_w, clip in d["settings"]:
    detector = LINe(None, d["w"], d["b"], p_a=p_a, p_w=p_w, clip=clip)
    detector.fit_features(d["x"], d["y"].float())  # as pytorch-ood's tests pass labels
    scores = detector.predict_features(d["test"])
    results.append((scores, detector.activation_keep, detector.weight_threshold))
torch.save(results, out)
"""


@pytest.mark.slow
def test_patched_pytorch_ood_scores_as_line_plugin(tmp_path):
    (x, y), (x_test, _), x_dtd, (w, b) = densenet_features()
    test = torch.cat([x_test, x_dtd])
    features, out = tmp_path / "features.pt", tmp_path / "results.pt"
    torch.save({"settings": SETTINGS, "x": x, "y": y, "test": test, "w": w, "b": b}, features)
    run = run_python(["-c", SCRIPT, str(features), str(installed()), str(out)])
    assert run.returncode == 0, run.stderr
    results = torch.load(out)
    for (p_a, p_w, clip), (scores, keep, threshold) in zip(SETTINGS, results):
        detector = LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip).fit_features(x, y)
        expected = detector.predict_features(test)
        assert torch.equal(scores, expected), (p_a, p_w, clip)
        assert torch.equal(keep, detector.activation_keep), (p_a, p_w, clip)
        assert torch.equal(threshold, detector.weight_threshold), (p_a, p_w, clip)
    assert len(results) == len(SETTINGS)
