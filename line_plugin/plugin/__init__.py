"""
The plugin layer: ``line_plugin.LINe`` (the core detector with ``from_model``, presets,
``clip_quantile``, progress bars, state files and fused GPU scoring). Imports the core and the
adapter.

Its exports are imported on first use (:mod:`.lazy`), so that :mod:`.presets` (torch-free)
gives the command line the preset names without loading torch.
"""

from typing import TYPE_CHECKING

from .lazy import lazy_exports

if TYPE_CHECKING:
    from .detector import LINe
    from .presets import PRESETS
    from .state import read_state, save_state

__all__ = ["LINe", "PRESETS", "read_state", "save_state"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"LINe": ".detector", "PRESETS": ".presets", "read_state": ".state", "save_state": ".state"},
)
