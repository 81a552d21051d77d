"""
The pipeline's typed records: the words of a calibration (the one place that says where a
threshold comes from), the metadata as the file holds it (of this version and of 0.2 and 0.3),
and rows as the command line writes them.
"""

import pytest

from line_plugin.pipeline import Calibration, Metadata, Row
from line_plugin.pipeline.metadata import VERSION, VERSION_KEY
from line_plugin.pipeline.threshold import threshold_origin

SCORES = [-3.0, -2.0, -1.0, 0.5]


def test_a_calibration_sets_the_threshold_and_says_where_it_came_from():
    unseen = Calibration.of_scores(SCORES, 0.75, "folder", "val/")
    assert (unseen.threshold, unseen.images, unseen.scores) == (-1.0, 4, SCORES)
    assert unseen.describe() == "calibrated on 4 unseen images"
    assert unseen.summary() == "threshold -1.0000 keeps 75 % of 4 images of val/"
    assert unseen.caveat() is None
    held_out = Calibration.of_scores(SCORES[:1], 0.95, "training")
    assert held_out.describe() == "calibrated on 1 held-out training image"
    assert held_out.summary() == "threshold -3.0000 keeps 95 % of 1 held-out training image"
    assert "more often than 5 %" in held_out.caveat()
    assert "--calibration-folder DIR, or Pipeline.calibrate" in held_out.caveat()
    given = Calibration.of_scores(SCORES, 0.5, "folder")  # a dataset: no folder
    assert given.summary() == "threshold -2.0000 keeps 50 % of 4 unseen images"
    assert threshold_origin(unseen) == unseen.describe()
    assert threshold_origin(None) == "given by the user"
    with pytest.raises(ValueError, match="no scores"):
        Calibration.of_scores([], 0.95, "folder")


def test_metadata_round_trips_through_the_files_dict():
    calibration = Calibration.of_scores(SCORES, 0.75, "folder", "val/")
    meta = Metadata("resnet18", ["a", "b"], "/data", 100, "auto", {"name": "energy"}, calibration)
    values = meta.to_dict()
    assert values[VERSION_KEY] == VERSION
    assert values["calibration_folder"] == "val/" and values["calibration_scores"] == SCORES
    assert Metadata.from_dict(values) == meta
    training = Calibration.of_scores(SCORES, 0.75, "training")
    values = Metadata("resnet18", calibration=training).to_dict()
    assert "calibration_folder" not in values and "auto" not in values
    assert "threshold" not in Metadata("resnet18").to_dict()  # no calibration, no threshold


def test_metadata_of_earlier_versions():
    # line-ood fit 0.3.0, a threshold without the calibration's source (read as training
    # images), LINe.save without metadata
    fit_0_3 = {
        "backbone": "resnet18",
        "classes": ["a"],
        "source": "/data",
        "fit_images": 54,
        "threshold": -5.5,
        "tpr": 0.95,
        "calibration_source": "training",
        "calibration_images": 6,
        "calibration_scores": [-6.0, -5.5],
        "preset": "cifar10",
    }
    meta = Metadata.from_dict(fit_0_3)
    assert (meta.backbone, meta.fit_images, meta.preset) == ("resnet18", 54, "cifar10")
    assert meta.calibration == Calibration(-5.5, 0.95, "training", 6, [-6.0, -5.5])
    bare = {"backbone": "resnet18", "threshold": -5}
    assert Metadata.from_dict(bare).calibration.source == "training"
    assert Metadata.from_dict({}) == Metadata()


@pytest.mark.parametrize(
    "values, message",
    [
        ({VERSION_KEY: VERSION + 1}, "written by a newer line_plugin"),
        ({"threshold": float("nan")}, "holds a threshold that is no finite number: nan"),
        ({"threshold": True}, "no finite number: True"),
    ],
)
def test_metadata_errors(values, message):
    with pytest.raises(ValueError, match=message):
        Metadata.from_dict(values, "s.pt")


def test_rows_as_the_command_line_writes_them():
    row = Row("a.png", -1.5, "cat", True)
    assert row.as_dict() == {"file": "a.png", "score": -1.5, "class": "cat", "ood": True}
    assert Row.from_dict(row.as_dict()) == row
    bare = Row("a.png", -1.5, "cat")
    assert bare.as_dict() == {"file": "a.png", "score": -1.5, "class": "cat"}
    assert Row.from_dict(bare.as_dict()) == bare
