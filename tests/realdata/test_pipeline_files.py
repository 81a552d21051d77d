"""
The state files of release 0.3.0 (``tests/golden/make_state_0_3_0.py``) load into
:class:`line_plugin.Pipeline` and score as 0.3.0 scored: a file of ``line-ood fit`` (its backbone,
threshold and calibration) and one of ``LINe.save`` (given its backbone). Scores within float
rounding (another machine's BLAS may sum in another order), classes and decisions exactly.
"""

import json
import math
from pathlib import Path

import pytest
from golden.make_state_0_3_0 import write_images

from line_plugin import Pipeline

GOLDEN = Path(__file__).parents[1] / "golden"
EXPECTED = json.loads((GOLDEN / "scores_0_3_0.json").read_text())


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images_0_3_0")
    write_images(folder)
    return folder


def assert_rows(rows, expected):
    assert [Path(r.file).name for r in rows] == [r["file"] for r in expected]
    assert [r.class_name for r in rows] == [r["class"] for r in expected]
    assert [r.ood for r in rows] == [r.get("ood") for r in expected]
    for row, old in zip(rows, expected):
        assert math.isclose(row.score, old["score"], rel_tol=1e-6, abs_tol=1e-6), row


def test_a_line_ood_fit_file_of_0_3_0(images):
    pipe = Pipeline.load(GOLDEN / "state_0_3_0_cli.pt")
    meta, calibration = pipe.metadata, pipe.calibration
    assert (meta.backbone, meta.fit_images, meta.preset) == ("resnet18", 54, "cifar10")
    assert (calibration.source, calibration.images, calibration.tpr) == ("training", 6, 0.95)
    assert len(pipe.classes) == 10 and pipe.detector.hyperparameters["p_w"] == 0.9
    result = pipe.score(images, progress=False)
    assert result.origin == "calibrated on 6 held-out training images"
    assert_rows(result.rows, EXPECTED["cli"])


def test_a_line_save_file_of_0_3_0(images):
    with pytest.raises(ValueError, match="names no backbone"):
        Pipeline.load(GOLDEN / "state_0_3_0_line.pt")
    pipe = Pipeline.load(GOLDEN / "state_0_3_0_line.pt", "resnet18")
    assert pipe.calibration is None and pipe.classes is None
    assert pipe.detector.clip_quantile == 0.9
    result = pipe.score(images, progress=False)
    assert result.threshold is None and result.flagged is None
    assert_rows(result.rows, EXPECTED["line"])


def test_a_named_backbone_takes_a_transform_of_another_size():
    from torchvision import transforms as T

    from line_plugin import zoo

    spec = zoo.load_model("resnet18").spec
    bigger = T.Compose([T.Resize(40), T.ToTensor(), T.Normalize(spec["mean"], spec["std"])])
    pipe = Pipeline.load(GOLDEN / "state_0_3_0_cli.pt", transform=bigger)
    assert pipe.backbone.transform is bigger and pipe.backbone.input_size == 40
    assert Pipeline.from_backbone("resnet18").backbone.input_size == 32  # its own
