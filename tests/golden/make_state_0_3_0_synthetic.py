"""
Write ``state_0_3_0.pt``: a state file of line_plugin 0.3.0 (commit 29fe4cc), with what 0.3.0
computed from it (scores of float32 and float64 features, digests of its masks) in its metadata,
so that tests/plugin/test_detector.py holds every later version to it.

Run with the package of that commit first on the path::

    mkdir /tmp/v030 && git archive 29fe4cc line_plugin tests/synthetic.py | tar -x -C /tmp/v030
    cd tests/golden
    PYTHONPATH=/tmp/v030 python make_state_0_3_0_synthetic.py state_0_3_0.pt
"""

import hashlib
import sys
from pathlib import Path

import torch

import line_plugin
from line_plugin import LINe

sys.path.insert(0, str(Path(line_plugin.__file__).parents[1] / "tests"))
from synthetic import problem  # noqa: E402 (the tests of that commit)

SETTING = {"p_a": 0.1, "p_w": 0.9, "clip": None, "clip_quantile": 0.8}


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def test_inputs() -> torch.Tensor:
    return torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(5)))


def main(path: str) -> None:
    assert line_plugin.__version__ == "0.3.0", line_plugin.__file__
    x, y, w, b = problem(0, n=400)
    det = LINe(None, w, b, **SETTING).fit_features(x, y)
    test = test_inputs()
    det.save(
        path,
        backbone="synthetic",
        version="0.3.0",
        scores32=det.predict_features(test).tolist(),
        scores64=det.predict_features(test.double()).tolist(),
        activation_keep_sha256=digest(det.activation_keep),
        weight_threshold_sha256=digest(det.weight_threshold),
    )


if __name__ == "__main__":
    main(sys.argv[1])
