"""
LINe (Leveraging Important Neurons) as a :mod:`pytorch_ood` detector for any timm backbone.

Layers, imports pointing down only: :mod:`line_plugin.core` (the detector as pytorch-ood holds
it), :mod:`line_plugin.adapter` (classifiers split into features and a linear head),
:mod:`line_plugin.plugin` (``LINe`` with ``from_model``, presets and files), and the application
(:mod:`~line_plugin.data`, :mod:`~line_plugin.zoo`, :mod:`~line_plugin.evaluation`,
:mod:`~line_plugin.cli`).
"""

import importlib
from typing import TYPE_CHECKING, Any, List

if TYPE_CHECKING:
    from .adapter import Split, default_transform, split_model
    from .plugin import PRESETS, LINe

__all__ = ["LINe", "PRESETS", "Split", "default_transform", "split_model"]
__version__ = "0.3.0"

#: exported name -> the sub-package it comes from; imported on first use, so that the command
#: line answers ``--help`` without loading torch
_EXPORTS = {
    "LINe": ".plugin",
    "PRESETS": ".plugin",
    "Split": ".adapter",
    "default_transform": ".adapter",
    "split_model": ".adapter",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
