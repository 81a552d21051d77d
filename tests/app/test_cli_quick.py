"""
The command line on the shared data, in the quick tier: ``line-ood fit`` on 60 images of the JPEG
CIFAR-10 training set and ``line-ood score`` on three MNIST images, through the shared resnet18
(the fastest shared model on a CPU); the scores are the library's. The full tier's CLI tests are
tests/realdata/test_cli.py and test_cli_decision.py.
"""

import csv
import io
import math

import torch
from PIL import Image

from benchmarks.harness import line_ood
from line_plugin import LINe, data, zoo
from line_plugin.plugin.state import read_state

BACKBONE = "resnet18"


def test_fit_then_score_a_folder(tmp_path):
    state = tmp_path / "line.pt"
    code, _, err = line_ood(
        "fit",
        "--backbone",
        BACKBONE,
        "--fit-samples",
        "60",
        "--preset",
        "cifar10",
        "--out",
        str(state),
        "-q",
    )
    assert code == 0, err
    saved, metadata = read_state(state)
    assert metadata["backbone"] == BACKBONE
    assert metadata["classes"] == list(data.CIFAR10_CLASSES)
    assert int(saved["class_counts"].sum()) == 54  # --calibration 0.1 held 6 of 60 out

    folder = tmp_path / "images"
    folder.mkdir()
    mnist = data.ood_set("mnist").x
    for i in range(3):
        Image.fromarray(mnist[i]).save(folder / f"img{i}.png")
    code, out, err = line_ood("score", "--state", str(state), str(folder), "-q")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["file"].rsplit("/", 1)[-1] for row in rows] == ["img0.png", "img1.png", "img2.png"]
    assert {row["class"] for row in rows} <= set(data.CIFAR10_CLASSES)

    backbone = zoo.load_model(BACKBONE)
    encoder, weight, bias = zoo.split_backbone(backbone)
    detector = LINe(encoder, weight, bias).load(state)
    images = torch.stack(
        [backbone.transform(Image.open(folder / f"img{i}.png").convert("RGB")) for i in range(3)]
    )
    with torch.no_grad():
        expected = detector.predict(images)
    for row, score in zip(rows, expected.tolist()):
        assert math.isclose(float(row["score"]), score, rel_tol=1e-6, abs_tol=1e-6), row
