"""
LINe (Leveraging Important Neurons) as a :mod:`pytorch_ood` detector for any timm backbone.

Layers, imports pointing down only: :mod:`line_plugin.core` (the detector as pytorch-ood holds
it), :mod:`line_plugin.adapter` (classifiers split into features and a linear head),
:mod:`line_plugin.plugin` (``LINe`` with ``from_model``, presets and files), and the application:
:class:`Pipeline` (:mod:`line_plugin.pipeline`, images to decisions) and around it
:mod:`~line_plugin.data`, :mod:`~line_plugin.zoo`, :mod:`~line_plugin.features`,
:mod:`~line_plugin.evaluation` and the command line, :mod:`~line_plugin.cli`.
"""

from typing import TYPE_CHECKING

from .plugin.lazy import lazy_exports

if TYPE_CHECKING:
    from .adapter import Split, default_transform, split_model
    from .pipeline import Calibration, Pipeline, Row, ScoreResult, Skipped
    from .plugin import PRESETS, LINe

__all__ = [
    "Calibration",
    "LINe",
    "PRESETS",
    "Pipeline",
    "Row",
    "ScoreResult",
    "Skipped",
    "Split",
    "default_transform",
    "split_model",
]
__version__ = "0.3.0"

#: exported name -> the sub-package it comes from; imported on first use, so that the command
#: line answers ``--help`` without loading torch
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Calibration": ".pipeline",
        "LINe": ".plugin",
        "PRESETS": ".plugin",
        "Pipeline": ".pipeline",
        "Row": ".pipeline",
        "ScoreResult": ".pipeline",
        "Skipped": ".pipeline",
        "Split": ".adapter",
        "default_transform": ".adapter",
        "split_model": ".adapter",
    },
)
