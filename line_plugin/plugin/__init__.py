"""
The plugin layer: ``line_plugin.LINe`` (the core detector with ``from_model``, presets,
``clip_quantile``, progress bars, state files and fused GPU scoring). Imports the core and the
adapter.
"""

from .detector import LINe
from .presets import PRESETS
from .state import read_state, save_state

__all__ = ["LINe", "PRESETS", "read_state", "save_state"]
