"""
:class:`Calibration`: a decision threshold with where it came from, and the words for it: the
one place that says where a threshold comes from, for the summary line of ``line-ood score``,
the HTML report and the summary of ``line-ood fit``.

The threshold itself is set by :func:`line_plugin.calibration.threshold_at_tpr`.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ..calibration import threshold_at_tpr
from ..messages import plural

#: :attr:`Calibration.source` of images given to :meth:`line_plugin.Pipeline.calibrate`:
#: in-distribution images that neither the backbone nor the fit has seen
FOLDER = "folder"
#: :attr:`Calibration.source` of training images held out of the fit
TRAINING = "training"
#: the words of a threshold given by the user (``threshold=``, ``--threshold``)
GIVEN = "given by the user"


@dataclass
class Calibration:
    """
    A threshold that keeps a share ``tpr`` of the outlier scores of in-distribution images.

    :param threshold: flag scores strictly above it
    :param tpr: the share of the calibration scores at or below the threshold it was set for
    :param source: :data:`FOLDER` (unseen images) or :data:`TRAINING` (held-out training
        images, which the backbone was trained on)
    :param images: the number of calibration images
    :param scores: their outlier scores, :math:`n` (for the report's histogram)
    :param folder: the folder (or file) of the images, where one was given
    """

    threshold: float
    tpr: Optional[float]
    source: str
    images: Optional[int]
    scores: List[float] = field(default_factory=list)
    folder: Optional[str] = None

    @classmethod
    def of_scores(
        cls, scores: Sequence[float], tpr: float, source: str, folder: Optional[str] = None
    ) -> "Calibration":
        """
        :param scores: outlier scores of the calibration images, :math:`n`
        :param tpr: share of them to keep (:func:`line_plugin.calibration.threshold_at_tpr`)
        :param source: :data:`FOLDER` or :data:`TRAINING`
        :param folder: where the images are, if one folder or file
        :return: the calibration
        :raises ValueError: for a bad rate, no scores or non-finite scores
        """
        scores = [float(s) for s in scores]
        threshold = threshold_at_tpr(scores, tpr)
        return cls(threshold, float(tpr), source, len(scores), scores, folder)

    def describe(self) -> str:
        """:return: where the threshold comes from, e.g. ``calibrated on 30 unseen images``"""
        if self.source == FOLDER:
            return f"calibrated on {plural(self.images, 'unseen image')}"
        return f"calibrated on {plural(self.images, 'held-out training image')}"

    def summary(self) -> str:
        """:return: e.g. ``threshold -4.4823 keeps 95 % of 30 images of val/``"""
        if self.source == TRAINING:
            images = plural(self.images, "held-out training image")
        elif self.folder is not None:
            images = f"{plural(self.images, 'image')} of {self.folder}"
        else:
            images = plural(self.images, "unseen image")
        return f"threshold {self.threshold:.4f} keeps {100 * self.tpr:g} % of {images}"

    def caveat(self) -> Optional[str]:
        """
        :return: for a threshold set on held-out training images, why new in-distribution
            images may be flagged more often than promised, and the remedy; else ``None``
        """
        if self.source != TRAINING:
            return None
        rate = round(100 * (1 - self.tpr), 6)
        return (
            "the threshold is calibrated on held-out training images, which the backbone was "
            f"trained on: new in-distribution images may be flagged more often than {rate:g} %; "
            "calibrate on in-distribution images it has not seen (--calibration-folder DIR, or "
            "Pipeline.calibrate)"
        )


def threshold_origin(calibration: Optional[Calibration]) -> str:
    """
    :param calibration: the calibration the threshold comes from, or ``None`` for one given
    :return: where the threshold comes from, in words
    """
    return GIVEN if calibration is None else calibration.describe()
