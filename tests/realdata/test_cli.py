"""
The ``line-ood`` command line, run in-process (``benchmarks/harness.py``) on the shared
resnet18 (the fastest shared model on a CPU) and tiny subsets.
"""

import csv
import io
import json
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
from PIL import Image

from benchmarks.harness import line_ood
from line_plugin import LINe, data, zoo
from line_plugin.cli import rows
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


def fit(*args: str) -> Tuple[int, str]:
    """:return: exit status and stderr of ``line-ood fit ARGS`` (in a module fixture)"""
    code, _, err = line_ood("fit", "--backbone", BACKBONE, "--no-progress", *args)
    return code, err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Tuple[Path, str]:
    """a state calibrated on held-out training images (the default), and fit's stderr"""
    path = tmp_path_factory.mktemp("state") / "line.pt"
    code, err = fit("--fit-samples", "200", "--preset", "cifar10", "--out", str(path))
    assert code == 0, err
    return path, err


@pytest.fixture(scope="module")
def state(fitted) -> Path:
    return fitted[0]


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


def test_fit_writes_the_detectors_own_file(tmp_path, state, images):
    # LINe.load reads the CLI's file; the CLI scores a file of LINe.save given --backbone
    backbone = zoo.load_model(BACKBONE)
    encoder, weight, bias = zoo.split_backbone(backbone)
    detector = LINe(encoder, weight, bias).load(state)
    plain = tmp_path / "plain.pt"
    detector.save(plain)
    image = str(images / "img0.png")
    _, expected, _ = line_ood("score", "--state", str(state), image, "--no-progress")
    code, out, err = line_ood(
        "score", "--state", str(plain), "--backbone", BACKBONE, image, "--no-progress"
    )
    assert code == 0, err
    assert [r["score"] for r in rows_of(out)] == [r["score"] for r in rows_of(expected)]
    code, _, err = line_ood("score", "--state", str(plain), image, "--no-progress")
    assert code == 1 and "names no backbone: pass --backbone" in err


def test_score_folder_recursively(state, images):
    code, out, err = line_ood("score", "--state", str(state), str(images), "--no-progress")
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


def test_score_files_to_csv_matches_folder_scores(tmp_path, state, images):
    out_csv = tmp_path / "scores.csv"
    files = [str(images / "img1.png"), str(images / "sub" / "texture.JPG")]
    code, out, err = line_ood(
        "score", "--state", str(state), *files, "--out", str(out_csv), "--no-progress"
    )
    assert code == 0, err
    assert out == ""
    by_file = {r["file"]: r for r in rows_of(out_csv.read_text())}
    _, folder_out, _ = line_ood("score", "--state", str(state), str(images), "--no-progress")
    for row in rows_of(folder_out):
        if row["file"] in by_file:
            assert by_file.pop(row["file"]) == row
    assert not by_file


def test_score_with_a_checkpoint_backbone(state, images):
    checkpoint = data.default_models_dir() / zoo.MODELS[BACKBONE][0]
    code, out, err = line_ood(
        *("score", "--state", str(state), "--backbone", f"resnet18:{checkpoint}"),
        *(str(images / "img0.png"), "--no-progress"),
    )
    assert code == 0, err
    assert len(rows_of(out)) == 1


def test_fit_on_an_image_folder_keeps_its_class_names(tmp_path):
    for k in range(10):  # resnet18 has 10 classes: every one needs a sample
        write_pngs(tmp_path / "train" / f"class{k}", 2, start=2 * k)
    out = tmp_path / "folder.pt"
    code, _, err = line_ood(
        *("fit", "--backbone", BACKBONE, "--train-folder", str(tmp_path / "train")),
        *("--p-w", "0.5", "--clip-quantile", "0.9", "--out", str(out), "--no-progress"),
    )
    assert code == 0, err
    saved, metadata = read_state(out)
    assert metadata["classes"] == [f"class{k}" for k in range(10)]
    assert saved["hyperparameters"]["p_w"] == 0.5
    assert saved["hyperparameters"]["clip_quantile"] == 0.9


# -- benchmark -----------------------------------------------------------------------------------


def test_benchmark_prints_auroc_and_fpr95_tables(tmp_path):
    code, out, err = line_ood(
        *("benchmark", "--backbone", BACKBONE, "--fit-samples", "100"),
        *("--test-samples", "60", "--ood-samples", "40", "--ood", "mnist", "dtd"),
        *("--detectors", "Energy", "LINe", "--cache", str(tmp_path), "--no-progress"),
    )
    assert code == 0, err
    assert "AUROC %" in out and "FPR95 %" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["detector", "mnist", "dtd", "mean"] in lines
    # Energy, LINe at the paper preset and LINe (auto), in the AUROC and the FPR95 table
    rows = [line for line in lines if line and line[0] in ("Energy", "LINe")]
    assert [r[0] if r[0] == "Energy" else " ".join(r[:2]) for r in rows] == [
        "Energy",
        "LINe (paper)",
        "LINe (auto)",
    ] * 2
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
    "unreadable image with --strict": (
        ["score", "--state", "{state}", "--strict", "{bad}/broken.png"],
        "cannot read image",
    ),
    "missing calibration folder": (
        ["fit", "--calibration-folder", "{tmp}/none", "--out", "{tmp}/x.pt"],
        "no such file or folder",
    ),
    "unreadable calibration image": (
        ["fit", "--backbone", BACKBONE, "--fit-samples", "20", "--calibration-folder", "{bad}"]
        + ["--out", "{tmp}/x.pt"],
        "cannot read calibration image",
    ),
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
def test_errors_are_one_line(tmp_path, state, images, bad_files, case):
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
    code, out, err = line_ood(*[a.format(**values) for a in args], "--no-progress")
    assert code == 1
    assert err.startswith("line-ood: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err and out == ""


# -- unreadable files, resume, calibration source, report ----------------------------------------


def cut_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.ood_set("dtd").x[1]).save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


#: the bad files of a collection and the reasons reported
BAD_FILES = {
    "empty.png": (b"", "empty file"),
    "notes.jpg": (b"not an image\n", "not an image file"),
    "cut.jpg": (None, "runcated"),
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """6 MNIST PNGs, one named <script>.png, and the three bad files of :data:`BAD_FILES`"""
    folder = tmp_path_factory.mktemp("mixed")
    write_pngs(folder, 5)
    Image.fromarray(data.ood_set("mnist").x[7]).save(folder / "<script>.png")
    for name, (contents, _) in BAD_FILES.items():
        (folder / name).write_bytes(cut_jpeg() if contents is None else contents)
    return folder


def score_json(state: Path, *args: str) -> Tuple[int, dict, str]:
    code, out, err = line_ood("score", "--state", str(state), "--format", "json", *args)
    return code, json.loads(out) if out else {}, err


@pytest.mark.parametrize("workers", ["0", "2"])
def test_bad_files_are_skipped_and_reported(state, mixed, workers):
    code, result, err = score_json(state, str(mixed), "--batch-size", "3", "--workers", workers)
    assert code == 3, err
    good = sorted(p.name for p in mixed.iterdir() if p.name not in BAD_FILES)
    assert [Path(r["file"]).name for r in result["rows"]] == good
    skipped = {Path(s["file"]).name: s["error"] for s in result["summary"]["skipped"]}
    assert sorted(skipped) == sorted(BAD_FILES)
    for name, (_, reason) in BAD_FILES.items():
        assert reason in skipped[name]
        assert f"line-ood: skipped {str(mixed / name)!r}: {skipped[name]}" in err
    assert result["summary"]["scored"] == 6
    assert err.strip().splitlines()[-1].endswith("; skipped 3 unreadable files")


def test_workers_give_the_same_rows(state, mixed):
    _, single, _ = score_json(state, str(mixed), "--batch-size", "3")
    _, multi, _ = score_json(state, str(mixed), "--batch-size", "3", "--workers", "2")
    assert multi == single


def test_strict_stops_at_an_unreadable_file(state, mixed):
    code, out, err = line_ood("score", "--state", str(state), "--strict", str(mixed))
    assert code == 1
    assert err.startswith("line-ood: error: cannot read image") and err.count("\n") == 1
    assert "(--strict)" in err


def test_no_readable_file_fails(state, mixed):
    code, out, err = line_ood("score", "--state", str(state), str(mixed / "empty.png"))
    assert code == 1
    assert (
        err.strip().splitlines()[-1] == "line-ood: error: no image could be read (1 file skipped)"
    )


def interrupt_after_first_batch(monkeypatch):
    from line_plugin import Pipeline

    original = Pipeline.score_batches

    def one_batch(*args, **kwargs):
        for k, batch in enumerate(original(*args, **kwargs)):
            if k == 1:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(Pipeline, "score_batches", one_batch)


@pytest.mark.parametrize("format", ["csv", "json"])
def test_interrupted_and_resumed_run_gives_the_same_rows(
    monkeypatch, tmp_path, state, mixed, format
):
    whole, part = tmp_path / f"whole.{format}", tmp_path / f"part.{format}"
    common = ("score", "--state", str(state), str(mixed), "--batch-size", "3", "--format", format)
    code, _, err = line_ood(*common, "--out", str(whole))
    assert code == 3, err
    with monkeypatch.context() as patch:
        interrupt_after_first_batch(patch)
        code, _, err = line_ood(*common, "--out", str(part))
    assert code == 130 and "interrupted" in err
    kept = rows.read_rows(part, format, with_ood=True)  # a JSON file cut short, too
    assert 0 < len(kept) < 6  # the first batch's rows were written
    code, _, err = line_ood(*common, "--out", str(part), "--resume")
    assert code == 3, err
    assert read_rows(part, format) == read_rows(whole, format)
    if format == "json":
        whole_summary = json.loads(whole.read_text())["summary"]
        assert json.loads(part.read_text())["summary"] == whole_summary
    # resuming a finished run scores nothing more and keeps the rows
    code, _, err = line_ood(*common, "--out", str(part), "--resume")
    assert read_rows(part, format) == read_rows(whole, format)


def read_rows(path: Path, format: str) -> List[dict]:
    if format == "csv":
        return rows_of(path.read_text())
    return json.loads(path.read_text())["rows"]


def test_training_calibration_warns_and_is_recorded(fitted, images):
    path, err = fitted
    meta = read_state(path)[1]
    assert meta["calibration_source"] == "training" and meta["calibration_images"] == 20
    assert len(meta["calibration_scores"]) == 20
    assert sorted(meta["calibration_scores"])[18] == meta["threshold"]  # k = ceil(0.95 * 20)
    assert "of 20 held-out training images" in err
    assert err.count("line-ood: warning: the threshold is calibrated on held-out training") == 1
    assert "more often than 5 %" in err
    code, result, err = score_json(path, str(images))
    assert result["summary"]["calibration_source"] == "training"
    assert "(calibrated on 20 held-out training images)" in err


@pytest.fixture(scope="module")
def unseen_state(tmp_path_factory) -> Tuple[Path, str, Path]:
    """a state calibrated on 30 CIFAR-10 test images; fit's stderr; the calibration folder"""
    root = tmp_path_factory.mktemp("unseen")
    test = data.subset(data.CIFAR10JPEG(split="test"), 30, seed=0)
    (root / "calibration").mkdir()
    for i in test.indices:
        test.dataset.image(i).save(root / "calibration" / f"test{i:05d}.png")
    code, err = fit(
        "--fit-samples",
        "200",
        "--preset",  # the paper's: auto would hold out a tenth of the fit images
        "cifar10",
        "--calibration-folder",
        str(root / "calibration"),
        "--out",
        str(root / "line.pt"),
    )
    assert code == 0, err
    return root / "line.pt", err, root / "calibration"


def test_folder_calibration_is_recorded_without_a_warning(unseen_state, images):
    path, err, folder = unseen_state
    state_dict, meta = read_state(path)
    assert int(state_dict["class_counts"].sum()) == 200  # LINe fitted on every training image
    assert meta["fit_images"] == 200
    assert meta["calibration_source"] == "folder" and meta["calibration_folder"] == str(folder)
    assert meta["calibration_images"] == 30 == len(meta["calibration_scores"])
    assert sorted(meta["calibration_scores"])[28] == meta["threshold"]  # k = ceil(0.95 * 30)
    assert f"keeps 95 % of 30 images of {folder}" in err
    assert "line-ood: warning" not in err
    code, result, err = score_json(path, str(images))
    assert code == 0, err
    summary = result["summary"]
    assert (summary["calibration_source"], summary["calibration_images"]) == ("folder", 30)
    assert err.strip().splitlines()[-1].endswith("(calibrated on 30 unseen images)")


def test_no_calibration_no_warning(tmp_path):
    code, err = fit("--fit-samples", "50", "--calibration", "0", "--out", str(tmp_path / "s.pt"))
    assert code == 0, err
    assert "line-ood: warning" not in err and "threshold" not in read_state(tmp_path / "s.pt")[1]


def test_report_of_a_run(tmp_path, unseen_state, mixed):
    from html.parser import HTMLParser

    path = unseen_state[0]
    page = tmp_path / "r.html"
    code, result, err = score_json(path, str(mixed), "--report", str(page))
    assert code == 3, err
    text = page.read_text()
    HTMLParser().feed(text)
    assert text.count("data:image/jpeg;base64,") == 3 * 6  # every gallery holds all 6 images
    assert "&lt;script&gt;.png" in text and "<script>" not in text
    assert "calibrated on 30 unseen images" in text
    for name in BAD_FILES:
        assert name in text
    assert f"wrote {page}" in err


def test_bad_report_path_fails_before_any_image_is_scored(monkeypatch, state, mixed):
    from line_plugin import Pipeline

    def never(*args, **kwargs):
        raise AssertionError("scored")

    monkeypatch.setattr(Pipeline, "score_batches", never)
    for report, message in (
        (str(mixed), "it is a folder"),
        (str(mixed / "no" / "r.html"), "its folder"),
    ):
        code, out, err = line_ood("score", "--state", str(state), str(mixed), "--report", report)
        assert code == 1 and message in err and err.count("\n") == 1 and out == ""
