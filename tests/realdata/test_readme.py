"""
The README's example of scoring a folder, run as written on folders made from the shared data:
the command line (``line-ood fit`` then ``score``) and the Python pipeline beside it, which give
the same rows.
"""

import csv
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.harness import line_ood
from line_plugin import data

pytestmark = pytest.mark.slow

README = Path(__file__).parents[2] / "README.md"


def example(language: str) -> str:
    """the code block of ``language`` in the README's section on scoring a folder"""
    text = README.read_text().split("## Scoring a folder of images", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    return block


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """train/ (20 JPEG CIFAR-10 training images per class), unseen/ (40 test images), images/
    (10 test images, 10 MNIST images and a file that is no image)"""
    root = tmp_path_factory.mktemp("readme")
    train = data.subset(data.CIFAR10JPEG(split="train"), 200, seed=0)
    for i, label in zip(train.indices, data.labels_of(train)):
        folder = root / "train" / data.CIFAR10_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        train.dataset.image(i).save(folder / f"{i:05d}.png")
    test = data.CIFAR10JPEG(split="test")
    chosen = np.random.default_rng(0).permutation(len(test))[:50]
    for name, indices in (("unseen", chosen[:40]), ("images", chosen[40:])):
        (root / name).mkdir()
        for i in indices:
            test.image(int(i)).save(root / name / f"test{i:05d}.png")
    for i, pixels in enumerate(data.ood_set("mnist").x[:10]):
        Image.fromarray(pixels).save(root / "images" / f"mnist{i}.png")
    (root / "images" / "notes.png").write_text("not an image")
    return root


def test_the_readme_example_runs_as_written(capsys, monkeypatch, folders):
    monkeypatch.chdir(folders)
    for line in example("bash").strip().splitlines():
        command = shlex.split(line)
        assert command[0] == "line-ood"
        code, _, err = line_ood(*command[1:])
        assert code in (0, 3), err  # score: 3, a file skipped
    cli = list(csv.DictReader(open("scores.csv")))
    scope: dict = {}
    exec(example("python"), scope)  # the README's code, as written
    out = capsys.readouterr().out.splitlines()
    result = scope["result"]
    assert out[-1] == f"{result.flagged} of 20 flagged; 1 unreadable"
    assert len(out) == 4 and out[0].startswith("images/")
    assert [row.file for row in result.rows] == [row["file"] for row in cli]
    assert [row.class_name for row in result.rows] == [row["class"] for row in cli]
    assert [str(int(row.ood)) for row in result.rows] == [row["ood"] for row in cli]
    assert [f"{row.score:.6f}" for row in result.rows] == [row["score"] for row in cli]
    mnist = sum(row.ood for row in result.rows if "mnist" in row.file)
    assert mnist > result.flagged - mnist  # more MNIST images flagged than CIFAR-10 ones
    assert Path("report.html").stat().st_size > 0 and scope["pipe"].threshold is not None
