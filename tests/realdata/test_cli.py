"""
The ``line-ood`` command line, run in-process through :func:`line_plugin.cli.main` on the shared
resnet18 (the fastest shared model on a CPU) and tiny subsets.
"""

import csv
import io
import math
from pathlib import Path
from typing import List

import numpy as np
import pytest
from cli_run import run
from PIL import Image

from line_plugin import LINe, data, zoo
from line_plugin.cli import main
from line_plugin.plugin.state import read_state

BACKBONE = "resnet18"

pytestmark = pytest.mark.slow


def write_pngs(folder: Path, n: int, start: int = 0, source: str = "mnist") -> List[Path]:
    """``n`` images of an OOD set as PNG files in ``folder``"""
    folder.mkdir(parents=True, exist_ok=True)
    x = data.ood_set(source).x
    paths = [folder / f"img{i}.png" for i in range(n)]
    for i, path in enumerate(paths):
        Image.fromarray(x[start + i]).save(path)
    return paths


def rows_of(text: str) -> List[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("state") / "line.pt"
    args = ["fit", "--backbone", BACKBONE, "--fit-samples", "200", "--no-progress"]
    args += ["--preset", "cifar10"]  # the paper preset these tests check; auto: test_auto_cli
    assert main(args + ["--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """3 PNGs, a JPEG of another size in a sub-folder, and a text file that is no image"""
    folder = tmp_path_factory.mktemp("images")
    write_pngs(folder, 3)
    img = Image.fromarray(data.ood_set("dtd").x[0]).resize((48, 40))
    (folder / "sub").mkdir()
    img.save(folder / "sub" / "texture.JPG")
    (folder / "notes.txt").write_text("not an image")
    return folder


# -- fit and score -------------------------------------------------------------------------------


def test_fit_stores_backbone_classes_and_preset(state):
    saved, metadata = read_state(state)
    assert metadata["backbone"] == BACKBONE
    assert metadata["classes"] == list(data.CIFAR10_CLASSES)
    assert metadata["source"].endswith("cifar10_jpeg")
    assert saved["hyperparameters"] == {
        "p_a": 0.9,
        "p_w": 0.9,
        "clip": 1.0,
        "clip_quantile": None,
    }
    assert int(saved["class_counts"].sum()) == 180  # --calibration 0.1 held out 20


def test_fit_writes_the_detectors_own_file(capsys, tmp_path, state, images):
    # LINe.load reads the CLI's file; the CLI scores a file of LINe.save given --backbone
    backbone = zoo.load_model(BACKBONE)
    encoder, weight, bias = zoo.split_backbone(backbone)
    detector = LINe(encoder, weight, bias).load(state)
    plain = tmp_path / "plain.pt"
    detector.save(plain)
    image = str(images / "img0.png")
    _, expected, _ = run(capsys, "score", "--state", str(state), image, "--no-progress")
    code, out, err = run(
        capsys, "score", "--state", str(plain), "--backbone", BACKBONE, image, "--no-progress"
    )
    assert code == 0, err
    assert [r["score"] for r in rows_of(out)] == [r["score"] for r in rows_of(expected)]
    code, _, err = run(capsys, "score", "--state", str(plain), image, "--no-progress")
    assert code == 1 and "names no backbone: pass --backbone" in err


def test_score_folder_recursively(capsys, state, images):
    code, out, err = run(capsys, "score", "--state", str(state), str(images), "--no-progress")
    assert code == 0, err
    rows = rows_of(out)
    assert [Path(r["file"]).name for r in rows] == [
        "img0.png",
        "img1.png",
        "img2.png",
        "texture.JPG",
    ]
    assert all(math.isfinite(float(r["score"])) for r in rows)
    assert {r["class"] for r in rows} <= set(data.CIFAR10_CLASSES)
    assert "scored 4 images" in err


def test_score_files_to_csv_matches_folder_scores(capsys, tmp_path, state, images):
    out_csv = tmp_path / "scores.csv"
    files = [str(images / "img1.png"), str(images / "sub" / "texture.JPG")]
    code, out, err = run(
        capsys, "score", "--state", str(state), *files, "--out", str(out_csv), "--no-progress"
    )
    assert code == 0, err
    assert out == ""
    by_file = {r["file"]: r for r in rows_of(out_csv.read_text())}
    _, folder_out, _ = run(capsys, "score", "--state", str(state), str(images), "--no-progress")
    for row in rows_of(folder_out):
        if row["file"] in by_file:
            assert by_file.pop(row["file"]) == row
    assert not by_file


def test_score_with_a_checkpoint_backbone(capsys, state, images):
    checkpoint = data.default_models_dir() / zoo.MODELS[BACKBONE][0]
    code, out, err = run(
        capsys,
        *("score", "--state", str(state), "--backbone", f"resnet18:{checkpoint}"),
        *(str(images / "img0.png"), "--no-progress"),
    )
    assert code == 0, err
    assert len(rows_of(out)) == 1


def test_fit_on_an_image_folder_keeps_its_class_names(capsys, tmp_path):
    for k in range(10):  # resnet18 has 10 classes: every one needs a sample
        write_pngs(tmp_path / "train" / f"class{k}", 2, start=2 * k)
    out = tmp_path / "folder.pt"
    code, _, err = run(
        capsys,
        *("fit", "--backbone", BACKBONE, "--train-folder", str(tmp_path / "train")),
        *("--p-w", "0.5", "--clip-quantile", "0.9", "--out", str(out), "--no-progress"),
    )
    assert code == 0, err
    saved, metadata = read_state(out)
    assert metadata["classes"] == [f"class{k}" for k in range(10)]
    assert saved["hyperparameters"]["p_w"] == 0.5
    assert saved["hyperparameters"]["clip_quantile"] == 0.9


# -- benchmark -----------------------------------------------------------------------------------


def test_benchmark_prints_auroc_and_fpr95_tables(capsys, tmp_path):
    code, out, err = run(
        capsys,
        *("benchmark", "--backbone", BACKBONE, "--fit-samples", "100"),
        *("--test-samples", "60", "--ood-samples", "40", "--ood", "mnist", "dtd"),
        *("--detectors", "Energy", "LINe", "--cache", str(tmp_path), "--no-progress"),
    )
    assert code == 0, err
    assert "AUROC %" in out and "FPR95 %" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["detector", "mnist", "dtd", "mean"] in lines
    rows = [line for line in lines if line and line[0] in ("Energy", "LINe")]
    assert len(rows) == 4  # two detectors, two tables
    for row in rows:
        values = [float(v.rstrip("*")) for v in row[-3:]]
        assert all(0 <= v <= 100 for v in values)
        assert np.isclose(values[2], (values[0] + values[1]) / 2, atol=0.051)


# -- errors --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    """a folder with ``bad.pt`` (no state) and ``broken.png`` (no image)"""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "bad.pt").write_text("not a state")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


ERRORS = {
    "unknown backbone": (["fit", "--backbone", "nope", "--out", "{tmp}/x.pt"], "unknown backbone"),
    "missing checkpoint": (
        ["fit", "--backbone", "resnet18:{tmp}/none.pt", "--out", "{tmp}/x.pt"],
        "does not exist",
    ),
    "checkpoint of another architecture": (
        ["fit", "--backbone", "convnext_atto:{resnet18}", "--out", "{tmp}/x.pt"],
        "cannot load",
    ),
    "missing state": (["score", "--state", "{tmp}/none.pt", "{images}"], "does not exist"),
    "not a state": (["score", "--state", "{bad}/bad.pt", "{images}"], "is not a saved LINe state"),
    "unreadable image": (["score", "--state", "{state}", "{bad}/broken.png"], "cannot read image"),
    "state of another backbone": (
        ["score", "--state", "{state}", "--backbone", "densenet_bc100", "{images}"],
        "fitted for backbone 'resnet18'",
    ),
    "state of another checkpoint": (
        ["score", "--state", "{state}", "--backbone", "densenet_bc100:{densenet}", "{images}"],
        "final layer",
    ),
    "missing images": (["score", "--state", "{state}", "{tmp}/none"], "no such file"),
    "empty folder": (["score", "--state", "{state}", "{tmp}"], "no images"),
    "missing data folder (fit)": (
        ["fit", "--data", "/nonexistent", "--out", "{tmp}/x.pt"],
        "data folder '/nonexistent' does not exist",
    ),
    "missing data folder (benchmark)": (
        ["benchmark", "--data", "/nonexistent"],
        "data folder '/nonexistent' does not exist",
    ),
    "missing training folder": (
        ["fit", "--train-folder", "{tmp}/none", "--out", "{tmp}/x.pt"],
        "does not exist",
    ),
    "training folder lacking classes": (
        ["fit", "--backbone", BACKBONE, "--train-folder", "{images}", "--calibration", "0"]
        + ["--out", "{tmp}/x.pt"],
        "class",
    ),
    "percent instead of fraction": (
        ["fit", "--p-a", "90", "--out", "{tmp}/x.pt"],
        "use 0.9 instead of 90",
    ),
    "output folder missing": (["fit", "--out", "{tmp}/none/x.pt"], "folder does not exist"),
    "unknown detector": (["benchmark", "--detectors", "Nope"], "unknown detectors"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line(capsys, tmp_path, state, images, bad_files, case):
    models = data.default_models_dir()
    values = {
        "tmp": tmp_path,
        "state": state,
        "images": images,
        "bad": bad_files,
        "resnet18": models / zoo.MODELS["resnet18"][0],
        "densenet": models / zoo.MODELS["densenet_bc100"][0],
    }
    args, expected = ERRORS[case]
    code, out, err = run(capsys, *[a.format(**values) for a in args], "--no-progress")
    assert code == 1
    assert err.startswith("line-ood: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err and out == ""
