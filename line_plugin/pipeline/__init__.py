"""
The application's object: :class:`Pipeline`, images to decisions (a backbone, its verified
split, the fitted :class:`line_plugin.LINe`, a typed calibration, the class names, one versioned
file), and what it is made of, one concept per module:

- :mod:`.backbone`: :class:`Backbone`, the classifier loaded by name or given as a module, with
  its transform and its split;
- :mod:`.sources`: what it reads (training data, the held-out share, images to score);
- :mod:`.scoring`: features to scores and classes, then to rows, batch by batch;
- :mod:`.threshold`: :class:`Calibration`, a threshold with where it came from, in words;
- :mod:`.records`: :class:`Row`, :class:`Skipped`, :class:`ScoredBatch`, :class:`ScoreResult`;
- :mod:`.metadata`: :class:`Metadata`, what the file holds beside the detector's state;
- :mod:`.file`: the file, read (:func:`~.file.read`) and written;
- :mod:`.pipeline`: :class:`Pipeline`.

``line-ood fit`` and ``line-ood score`` (:mod:`line_plugin.cli`) are thin shells over it.
"""

from .backbone import Backbone
from .file import PipelineFile
from .metadata import Metadata
from .pipeline import Pipeline
from .records import Row, ScoredBatch, ScoreResult, Skipped, UnreadableImageError
from .threshold import Calibration

__all__ = [
    "Backbone",
    "Calibration",
    "Metadata",
    "Pipeline",
    "PipelineFile",
    "Row",
    "ScoreResult",
    "ScoredBatch",
    "Skipped",
    "UnreadableImageError",
]
