"""
LINe (Leveraging Important Neurons) as a :mod:`pytorch_ood` detector for any timm backbone.
"""

from .detector import LINe
from .presets import PRESETS

__all__ = ["LINe", "PRESETS"]
__version__ = "0.1.0"
