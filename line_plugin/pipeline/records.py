"""
What scoring gives: a :class:`Row` per image scored, a :class:`Skipped` record per file that
could not be read, one :class:`ScoredBatch` of both per batch (as the images stream through),
and the :class:`ScoreResult` of a whole run.
"""

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional

from .threshold import Calibration, threshold_origin


class Row(NamedTuple):
    """
    One image scored.

    :param file: its path (or, for a data loader, its position in the stream)
    :param score: LINe's outlier score: higher means more likely out-of-distribution
    :param class_name: the classifier's prediction (a class name, or the label as text)
    :param ood: ``score > threshold``; ``None`` without a threshold
    """

    file: str
    score: float
    class_name: str
    ood: Optional[bool] = None

    def as_dict(self) -> Dict:
        """:return: ``file``, ``score``, ``class`` and, with a threshold, ``ood``"""
        out = {"file": self.file, "score": self.score, "class": self.class_name}
        if self.ood is not None:
            out["ood"] = self.ood
        return out

    @classmethod
    def from_dict(cls, row: Dict) -> "Row":
        """:return: the row of :meth:`as_dict`"""
        return cls(row["file"], row["score"], row["class"], row.get("ood"))


class Skipped(NamedTuple):
    """
    A file that could not be read, and why (``empty file``, ``not an image file ...``).
    """

    file: str
    error: str

    def as_dict(self) -> Dict:
        """:return: ``file`` and ``error``"""
        return {"file": self.file, "error": self.error}


class ScoredBatch(NamedTuple):
    """The rows of one batch, in the order of the files, and the files of it that were skipped."""

    rows: List[Row]
    skipped: List[Skipped]


class UnreadableImageError(ValueError):
    """
    With ``strict=True``: a file could not be read.

    :param skipped: the file and the reason
    """

    def __init__(self, skipped: Skipped):
        super().__init__(f"cannot read image {skipped.file!r}: {skipped.error}")
        self.skipped = skipped


@dataclass
class ScoreResult:
    """
    A scoring run: the rows, the files skipped, and the threshold they were flagged by.

    :param rows: one per image scored, in the order of the files
    :param skipped: the files that could not be read
    :param threshold: the threshold, or ``None`` (no row is flagged)
    :param given: whether ``threshold`` was given by the user rather than calibrated
    :param calibration: the pipeline's calibration, if any (used or not: the report shows its
        scores)
    :param backbone: the backbone's name
    :param state: the pipeline's file, if it was loaded from or saved to one
    """

    rows: List[Row]
    skipped: List[Skipped]
    threshold: Optional[float]
    given: bool
    calibration: Optional[Calibration]
    backbone: str
    state: Optional[str] = None

    @property
    def scored(self) -> int:
        """the number of images scored"""
        return len(self.rows)

    @property
    def flagged(self) -> Optional[int]:
        """the number of images flagged as OOD; ``None`` without a threshold"""
        return None if self.threshold is None else sum(1 for row in self.rows if row.ood)

    @property
    def origin(self) -> Optional[str]:
        """where the threshold comes from, in words (:func:`.threshold.threshold_origin`)"""
        if self.threshold is None:
            return None
        return threshold_origin(None if self.given else self.calibration)

    @property
    def threshold_calibration(self) -> Optional[Calibration]:
        """the calibration the threshold comes from; ``None`` for a given one or none"""
        return None if self.threshold is None or self.given else self.calibration
