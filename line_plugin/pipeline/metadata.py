"""
:class:`Metadata`: what a pipeline's file says beside the detector's state: the backbone, the
class names, the training data, the preset and ``auto``'s choice, and the calibration.

In the file it is a dict of plain values, with the keys ``line-ood fit`` 0.3.0 wrote (so that
0.3.0 reads the files of this version and the other way round) and ``"pipeline"``, the version
of this layout (:data:`VERSION`; absent in files of 0.3.0 and before, read as 0). Files of
``LINe.save`` hold no metadata, or what their caller passed.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .threshold import FOLDER, TRAINING, Calibration

#: version of the metadata's layout
VERSION = 1
#: the key of :data:`VERSION` in the file
VERSION_KEY = "pipeline"


@dataclass
class Metadata:
    """
    :param backbone: the backbone's name: a shared model, ``ARCH:CHECKPOINT``, or the name of
        a model given as an ``nn.Module``
    :param classes: the class names, by label
    :param source: the training data
    :param fit_images: the number of images LINe was fitted on
    :param preset: ``"auto"``, a paper preset, or ``None`` (hyperparameters given)
    :param auto: what preset ``auto`` chose, as plain values
        (:meth:`line_plugin.plugin.auto.AutoChoice.metadata`)
    :param calibration: the decision threshold and where it came from, if calibrated
    """

    backbone: Optional[str] = None
    classes: Optional[List[str]] = None
    source: Optional[str] = None
    fit_images: Optional[int] = None
    preset: Optional[str] = None
    auto: Optional[Dict[str, Any]] = None
    calibration: Optional[Calibration] = None

    def to_dict(self) -> Dict[str, Any]:
        """:return: the plain values written to the file"""
        out: Dict[str, Any] = {
            "backbone": self.backbone,
            "classes": self.classes,
            "source": self.source,
            "fit_images": self.fit_images,
        }
        c = self.calibration
        if c is not None:
            out.update(threshold=c.threshold, tpr=c.tpr, calibration_source=c.source)
            out["calibration_images"] = c.images
            if c.source == FOLDER:
                out["calibration_folder"] = c.folder
            out["calibration_scores"] = list(c.scores)
        out["preset"] = self.preset
        if self.auto is not None:
            out["auto"] = self.auto
        out[VERSION_KEY] = VERSION
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any], path: str = "the file") -> "Metadata":
        """
        :param values: a file's metadata, of this version or an earlier one (0.1 to 0.3), or
            ``{}`` for a file of ``LINe.save``
        :param path: the file, for the messages
        :return: the metadata
        :raises ValueError: for a file of a newer version, or a threshold that is no finite
            number
        """
        version = values.get(VERSION_KEY, 0)
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(
                f"{str(path)!r} was written by a newer line_plugin (metadata version {version!r}; "
                f"this one reads up to {VERSION}): upgrade line_plugin"
            )
        classes = values.get("classes")
        fit_images = values.get("fit_images")
        return cls(
            backbone=values.get("backbone"),
            classes=None if classes is None else [str(c) for c in classes],
            source=values.get("source"),
            fit_images=None if fit_images is None else int(fit_images),
            preset=values.get("preset"),
            auto=values.get("auto"),
            calibration=_calibration(values, path),
        )


def _calibration(values: Dict[str, Any], path: str) -> Optional[Calibration]:
    threshold = values.get("threshold")
    if threshold is None:
        return None
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
    ):
        raise ValueError(
            f"{str(path)!r} holds a threshold that is no finite number: {threshold!r}"
        )
    return Calibration(
        threshold=float(threshold),
        tpr=values.get("tpr"),
        source=values.get("calibration_source", TRAINING),  # 0.2 calibrated on training images
        images=values.get("calibration_images"),
        scores=list(values.get("calibration_scores") or []),
        folder=values.get("calibration_folder"),
    )
