"""
LINe (Leveraging Important Neurons) as a :mod:`pytorch_ood` detector for any timm backbone.
"""

from .adapter import Split, default_transform, split_model
from .detector import LINe
from .presets import PRESETS

__all__ = ["LINe", "PRESETS", "Split", "default_transform", "split_model"]
__version__ = "0.1.0"
