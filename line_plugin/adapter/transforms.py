"""
The input pipeline that matches a model: timm's own data config and eval transform.

For timm models the values come from the model's ``pretrained_cfg``; other models get timm's
defaults (ImageNet mean and std, 224 pixels, crop 0.875) with bilinear resizing, as torchvision's
classifiers expect. Keyword arguments override any value.
"""

from typing import Any, Callable, Dict

import timm.data
from torch import nn


def data_config(model: nn.Module, **overrides: Any) -> Dict[str, Any]:
    """
    Input size, interpolation, mean, std and crop of a model, as timm resolves them.

    :param model: a timm model, or any other classifier
    :param overrides: values that replace the resolved ones (``input_size=(3, 32, 32)``,
        ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``); a model created with a
        non-default ``img_size`` still carries the default in its ``pretrained_cfg``: pass
        ``input_size`` then
    :return: a dict with the keys ``input_size``, ``interpolation``, ``mean``, ``std``,
        ``crop_pct`` and ``crop_mode``
    """
    if not getattr(model, "pretrained_cfg", None):
        overrides.setdefault("interpolation", "bilinear")
    return timm.data.resolve_model_data_config(model, args=overrides)


def default_transform(model: nn.Module, **overrides: Any) -> Callable:
    """
    The evaluation transform of a model (resize, center crop, tensor, normalise): timm's own.

    :param model: a timm model, or any other classifier
    :param overrides: as for :func:`data_config`
    :return: a callable from a PIL image to a :math:`C \\times H \\times W` tensor
    """
    return timm.data.create_transform(**data_config(model, **overrides), is_training=False)
