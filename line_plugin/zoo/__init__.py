"""
The shared trained CIFAR-10 classifiers and the reading of classifier checkpoints, kept apart as
timm keeps them: the DenseNet-BC-100 architecture of the DICE/LINe checkpoints
(:mod:`.densenet`: :class:`DenseNet3`), a loaded classifier with its transform and its split
(:mod:`.model`: :class:`ZooModel`, :func:`input_transform`, :func:`split_backbone`), the
checkpoint reader (:mod:`.checkpoint`: :func:`load_checkpoint`) and the registry of the shared
models (:mod:`.registry`: :data:`MODELS`, :func:`load_model`). Each module imports only those
before it in this list.
"""

from .checkpoint import load_checkpoint
from .densenet import DenseNet3
from .model import ZooModel, input_transform, split_backbone
from .registry import CIFAR10_MEAN, CIFAR10_STD, MODELS, load_model

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "MODELS",
    "DenseNet3",
    "ZooModel",
    "input_transform",
    "load_checkpoint",
    "load_model",
    "split_backbone",
]
