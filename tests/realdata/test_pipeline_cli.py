"""
``line-ood fit`` and ``line-ood score`` against :class:`line_plugin.Pipeline` on the same inputs
(the shared resnet18, JPEG CIFAR-10 training images, a folder of MNIST and CIFAR-10 test images
with an unreadable file): the same state, metadata, threshold and rows, exactly. Once with the
defaults (preset ``auto``, a tenth held out for the threshold) and once with the paper's preset
calibrated on a folder of unseen images.
"""

import json

import pytest
import torch
from golden.make_state_0_3_0 import write_images

from benchmarks.harness import line_ood
from line_plugin import Pipeline, data
from line_plugin.pipeline import file

pytestmark = pytest.mark.slow

BACKBONE = "resnet18"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_cli")
    write_images(root / "images")
    (root / "images" / "broken.png").write_bytes(b"not an image")
    test = data.subset(data.CIFAR10JPEG(split="test"), 40, seed=3)
    (root / "unseen").mkdir()
    for i in test.indices:
        test.dataset.image(i).save(root / "unseen" / f"test{i:05d}.png")
    return root


CASES = {
    "defaults": ([], {}),
    "paper preset, unseen images": (
        ["--preset", "cifar10", "--calibration-folder", "{unseen}", "--tpr", "0.9"],
        {"preset": "cifar10", "calibration": 0},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_and_pipeline_give_the_same_state_threshold_and_rows(tmp_path, folders, case):
    extra, keywords = CASES[case]
    unseen = str(folders / "unseen")
    state = tmp_path / "cli.pt"
    fit = ["fit", "--backbone", BACKBONE, "--fit-samples", "300", "--seed", "2", "-q"]
    code, _, err = line_ood(*fit, *[a.format(unseen=unseen) for a in extra], "--out", str(state))
    assert code == 0, err
    code, out, err = line_ood(
        "score", "--state", str(state), "--format", "json", "-q", str(folders / "images")
    )
    assert code == 3, err  # the unreadable file
    cli = json.loads(out)

    shared = data.default_data_dir() / "cifar10_jpeg"
    pipe = Pipeline.from_backbone(BACKBONE)
    pipe.fit(shared, fit_samples=300, seed=2, progress=False, **keywords)
    if "calibration" in keywords:
        pipe.calibrate(unseen, tpr=0.9, progress=False)
    saved = file.read(state)
    assert saved.metadata == pipe.metadata  # threshold, calibration scores, auto's choice
    for key in ("class_means", "class_counts", "activation_sample"):
        assert torch.equal(saved.state[key], pipe.detector.state_dict()[key]), key
    result = pipe.score(folders / "images", progress=False)
    assert [row.as_dict() for row in result.rows] == cli["rows"]
    assert [s.as_dict() for s in result.skipped] == cli["summary"]["skipped"]
    assert cli["summary"]["threshold"] == result.threshold == pipe.threshold
    assert cli["summary"]["flagged"] == result.flagged
