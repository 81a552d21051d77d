"""
Backbone splitting: any classifier as penultimate features plus one exact linear head.

:func:`split_model` turns a timm, torchvision or plain :class:`torch.nn.Module` classifier into
``encoder, weight, bias`` with ``encoder(x) @ weight.T + bias == model(x)``, checked on a probe
batch.
:func:`data_config` and :func:`default_transform` give the matching input pipeline.
"""

from .encoder import ClassifierInputs, PreLogits
from .split import NoLinearHeadError, Split, split_model
from .transforms import data_config, default_transform

__all__ = [
    "ClassifierInputs",
    "NoLinearHeadError",
    "PreLogits",
    "Split",
    "data_config",
    "default_transform",
    "split_model",
]
