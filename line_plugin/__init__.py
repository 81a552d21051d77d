"""
LINe (Leveraging Important Neurons) as a :mod:`pytorch_ood` detector for any timm backbone.

Layers, imports pointing down only: :mod:`line_plugin.core` (the detector as pytorch-ood holds
it), :mod:`line_plugin.adapter` (classifiers split into features and a linear head),
:mod:`line_plugin.plugin` (``LINe`` with ``from_model``, presets and files), and the application
(:mod:`~line_plugin.data`, :mod:`~line_plugin.zoo`, :mod:`~line_plugin.evaluation`,
:mod:`~line_plugin.cli`).
"""

from .adapter import Split, default_transform, split_model
from .plugin import PRESETS, LINe

__all__ = ["LINe", "PRESETS", "Split", "default_transform", "split_model"]
__version__ = "0.2.0"
