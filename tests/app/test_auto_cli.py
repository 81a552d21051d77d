"""
``line-ood fit --preset auto`` (the default without hyperparameters): the choice on the output,
in ``--format json`` and in the state's metadata, and the state round-tripping through
``line-ood score``; on the shared resnet18 and a tiny subset.
"""

import json

import pytest
from PIL import Image

from benchmarks.harness import line_ood
from line_plugin import data
from line_plugin.plugin.auto import CANDIDATES
from line_plugin.plugin.state import read_state

pytestmark = pytest.mark.slow

FIT = ("fit", "--backbone", "resnet18", "--fit-samples", "300", "--no-progress")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """the state and JSON output of ``line-ood fit`` without a preset"""
    path = tmp_path_factory.mktemp("auto") / "s.pt"
    code, out, err = line_ood(*FIT, "--format", "json", "--out", str(path))
    assert code == 0, err
    return path, json.loads(out)


def test_fit_defaults_to_auto_and_says_what_it_chose(fitted):
    path, summary = fitted
    state, metadata = read_state(path)
    assert summary["preset"] == metadata["preset"] == "auto"
    choice = summary["auto"]
    assert choice["name"] in CANDIDATES and choice["reason"]
    assert choice == metadata["auto"]
    assert set(choice["val_auroc"]) == set(CANDIDATES)
    # 300 images: 30 held out for the threshold, every 10th of the other 270 for auto
    assert choice["held_out"] == 27
    assert summary["fit_images"] == int(state["class_counts"].sum()) == 270 - 27
    assert summary["hyperparameters"] == state["hyperparameters"]
    assert summary["threshold"] == metadata["threshold"]


def test_explicit_auto_round_trips_through_score(tmp_path, fitted):
    path, summary = fitted
    again = tmp_path / "again.pt"
    code, _, err = line_ood(*FIT, "--preset", "auto", "--out", str(again))
    assert code == 0, err
    assert summary["auto"]["summary"] in err  # the text output says what it chose
    images = tmp_path / "images"
    images.mkdir()
    x = data.ood_set("mnist").x
    for i in range(3):
        Image.fromarray(x[i]).save(images / f"img{i}.png")
    outputs = []
    for state in (path, again):
        code, out, err = line_ood("score", "--state", str(state), str(images), "--no-progress")
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 4


@pytest.mark.parametrize(
    "args,status,message",
    [
        (("--preset", "auto", "--p-a", "0.5"), 1, "preset 'auto' chooses p_a, p_w and clip"),
        (("--preset", "auto", "--clip", "none"), 1, "drop clip"),
        (("--preset", "svhn"), 2, "invalid choice: 'svhn'"),
    ],
)
def test_bad_presets_are_one_line_errors(tmp_path, args, status, message):
    code, _, err = line_ood("fit", *args, "--out", str(tmp_path / "x.pt"))
    assert code == status and message in err
    if status == 1:
        assert len(err.strip().splitlines()) == 1
