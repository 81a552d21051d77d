"""
:class:`line_plugin.Pipeline` on a toy classifier and image folders: fit, calibrate, score into
rows (unreadable files skipped, or errors with ``strict``), stream, save and load; training data
and images as folders, datasets and loaders; the files of earlier versions.
"""

from pathlib import Path

import pytest
import torch
from PIL import Image
from pipeline_toys import CLASSES, TRANSFORM, Colours, class_folder, image_folder
from pytorch_ood.api import RequiresFittingException
from synthetic import problem
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms as T

from line_plugin import LINe, Pipeline
from line_plugin.calibration import threshold_at_tpr
from line_plugin.data import ImageFiles
from line_plugin.pipeline import UnreadableImageError

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """training folder (30 per class), unseen ID images (21), and 9 images + 3 grey + 2 bad"""
    root = tmp_path_factory.mktemp("toy")
    class_folder(root / "train", 30)
    image_folder(root / "unseen", 21, seed=2)
    image_folder(root / "images", 9, grey=3, seed=3)
    (root / "images" / "empty.png").write_bytes(b"")
    (root / "images" / "notes.jpg").write_text("not an image")
    return root


def toy() -> Pipeline:
    return Pipeline.from_backbone(Colours(), TRANSFORM, name="colours")


@pytest.fixture(scope="module")
def fitted(folders):
    """fitted at the paper's preset on the training folder, calibrated on the unseen images"""
    pipe = toy().fit(folders / "train", "cifar10", progress=False)
    return pipe.calibrate(folders / "unseen", progress=False)


def direct_scores(pipe: Pipeline, files):
    """LINe's scores and the classifier's classes of image files, computed directly"""
    x = torch.stack([TRANSFORM(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        return pipe.detector.predict(x), Colours()(x).argmax(1)


def test_fit_holds_out_a_share_and_calibrates_on_it(folders):
    pipe = toy().fit(folders / "train", "cifar10", calibration=0.2, tpr=0.9, progress=False)
    meta, calibration = pipe.metadata, pipe.calibration
    assert (meta.backbone, meta.classes, meta.preset) == ("colours", CLASSES, "cifar10")
    assert meta.source == str(folders / "train") and meta.fit_images == 72  # 90 less 18
    assert (calibration.source, calibration.images, calibration.tpr) == ("training", 18, 0.9)
    assert calibration.threshold == threshold_at_tpr(calibration.scores, 0.9)
    assert pipe.threshold == calibration.threshold
    assert pipe.auto is None and pipe.detector.p_a == 0.9


def test_fit_defaults_to_auto_and_a_tenth_held_out(folders):
    pipe = toy().fit(folders / "train", progress=False)
    assert pipe.metadata.preset == "auto" and pipe.auto["name"] == "energy"
    assert pipe.calibration.images == 9 and pipe.calibration.source == "training"


def test_calibrate_on_unseen_images(fitted, folders):
    calibration = fitted.calibration
    assert (calibration.source, calibration.folder) == ("folder", str(folders / "unseen"))
    assert calibration.images == 21 == len(calibration.scores)
    assert calibration.threshold == threshold_at_tpr(calibration.scores, 0.95)
    assert fitted.metadata.fit_images == 81  # the default share held out, not calibrated on


def test_score_rows_are_the_detectors_and_the_classifiers(fitted, folders):
    result = fitted.score(folders / "images", progress=False)
    files = sorted(p for p in (folders / "images").iterdir() if p.suffix == ".png")
    good = [f for f in files if f.name != "empty.png"]
    assert [row.file for row in result.rows] == [str(f) for f in good]
    scores, labels = direct_scores(fitted, good)
    assert [row.score for row in result.rows] == scores.tolist()
    assert [row.class_name for row in result.rows] == [CLASSES[k] for k in labels]
    assert [row.ood for row in result.rows] == (scores > fitted.threshold).tolist()
    assert result.flagged == sum((scores > fitted.threshold).tolist())
    assert all(row.ood for row in result.rows[-3:])  # the grey images
    assert {s.file: s.error for s in result.skipped} == {
        str(folders / "images" / "empty.png"): "empty file",
        str(folders / "images" / "notes.jpg"): "not an image file (its format is not recognised)",
    }
    assert (result.threshold, result.given, result.backbone) == (
        fitted.threshold,
        False,
        "colours",
    )
    assert result.origin == "calibrated on 21 unseen images"


def test_strict_makes_an_unreadable_file_an_error(fitted, folders):
    with pytest.raises(UnreadableImageError, match=r"cannot read image '.*empty.png': empty file"):
        fitted.score(folders / "images", strict=True, progress=False)
    with pytest.raises(ValueError, match="cannot read calibration image '.*empty.png'"):
        toy().fit(folders / "train", progress=False).calibrate(folders / "images")


def test_batches_stream_in_order_and_exclude_files(fitted, folders):
    whole = fitted.score(folders / "images", progress=False)
    batches = list(fitted.score_batches(folders / "images", batch_size=4, progress=False))
    assert len(batches) == 4  # 14 files
    assert [r for b in batches for r in b.rows] == whole.rows
    assert [s for b in batches for s in b.skipped] == whole.skipped
    done = {row.file for row in whole.rows[:5]}
    rest = [r for b in fitted.score_batches(folders / "images", exclude=done) for r in b.rows]
    assert rest == whole.rows[5:]


def test_a_given_threshold(fitted, folders):
    result = fitted.score(folders / "images", threshold=1e9, progress=False)
    assert result.given and result.origin == "given by the user" and result.flagged == 0
    assert result.threshold_calibration is None and result.calibration is fitted.calibration
    with pytest.raises(ValueError, match="threshold must be finite"):
        fitted.score_batches(folders / "images", threshold=float("nan"))


def test_save_and_load_give_the_same_rows(tmp_path, fitted, folders):
    path = tmp_path / "toy.pt"
    fitted.save(path)
    loaded = Pipeline.load(path, Colours(), transform=TRANSFORM)
    assert loaded.metadata == fitted.metadata and loaded.path == str(path)
    assert loaded.detector.hyperparameters == fitted.detector.hyperparameters
    expected = fitted.score(folders / "images", progress=False)
    assert loaded.score(folders / "images", progress=False).rows == expected.rows
    with pytest.raises(ValueError, match="unknown backbone 'colours'"):
        Pipeline.load(path)  # a module's name is no shared model: pass the module


def test_datasets_and_loaders(fitted):
    x = torch.rand(12, 3, 8, 8) * 0.3
    x[torch.arange(12), torch.arange(12) % 3] += 0.6  # dominant colour: the label
    y = torch.arange(12) % 3
    dataset = TensorDataset(x, y)
    on_dataset = toy().fit(dataset, "cifar10", calibration=0, progress=False)
    on_loader = toy().fit(DataLoader(dataset, batch_size=5), "cifar10", progress=False)
    assert on_loader.calibration is None  # a loader: nothing held out by default
    assert torch.equal(on_loader.detector.class_means, on_dataset.detector.class_means)
    assert on_loader.metadata.source == "TensorDataset" and on_loader.metadata.classes is None
    rows = on_dataset.score(dataset, progress=False).rows
    assert [r.file for r in rows] == [str(i) for i in range(12)]
    assert [r.class_name for r in rows] == [str(int(k)) for k in y]  # no class names
    assert on_dataset.score(DataLoader(dataset, batch_size=5), progress=False).rows == rows
    with pytest.raises(ValueError, match="no share of it can be held out"):
        toy().fit(DataLoader(dataset), calibration=0.1)
    with pytest.raises(ValueError, match="fit_samples takes a subset"):
        toy().fit(DataLoader(dataset), fit_samples=5)
    files = ImageFiles(["a.png"], TRANSFORM, 8)
    with pytest.raises(ValueError, match="scored in order"):
        fitted.score(DataLoader(files, shuffle=True))


def test_bad_inputs_are_one_line_errors(folders):
    with pytest.raises(RequiresFittingException, match="fit"):
        toy().score(folders / "images")
    with pytest.raises(FileNotFoundError, match="training folder '.*none' does not exist"):
        toy().fit(folders / "none")
    with pytest.raises(ValueError, match="cannot fit on a list"):
        toy().fit([1, 2])
    with pytest.raises(ValueError, match="preset 'auto' chooses"):
        toy().fit(folders / "train", "auto", p_a=0.5)
    with pytest.raises(ValueError, match="true-positive rate"):
        toy().fit(folders / "train", tpr=95)


class _Synthetic(nn.Module):
    """4 x 4 images to 13 post-ReLU features and the head of ``synthetic.problem(0)``"""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(48, 13), nn.ReLU())
        self.fc = nn.Linear(13, 7)
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(b)

    def forward(self, x):
        return self.fc(self.body(x))


def test_a_state_file_of_version_0_2_loads_with_the_same_scores():
    # written by line_plugin 0.2.0 for the head of problem(0), named "synthetic"
    _, _, w, b = problem(0, n=400)
    torch.manual_seed(0)
    model = _Synthetic(w, b)
    small = T.Compose([T.Resize((4, 4)), T.ToTensor()])
    pipe = Pipeline.load(GOLDEN / "state_0_2_0.pt", model, transform=small)
    assert pipe.metadata.backbone == "synthetic" and pipe.classes == [str(k) for k in range(7)]
    x = torch.rand(20, 3, 4, 4)
    expected = LINe(None, w, b).load(GOLDEN / "state_0_2_0.pt").predict_features(model.body(x))
    rows = pipe.score(TensorDataset(x, torch.zeros(20)), progress=False).rows
    assert [row.score for row in rows] == expected.tolist()
    with pytest.raises(ValueError, match="names no backbone: pass --backbone"):
        Pipeline.load(_plain_state(w, b))


def _plain_state(w, b) -> str:
    import tempfile

    x, y, _, _ = problem(0, n=400)
    path = Path(tempfile.mkdtemp()) / "plain.pt"
    LINe(None, w, b).fit_features(x, y).save(path)
    return str(path)
