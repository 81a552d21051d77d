"""
:class:`Backbone`: the classifier a pipeline runs, with its input transform and its verified
split into penultimate features and linear head; loaded by name (a shared model or
``ARCH:CHECKPOINT``, :mod:`line_plugin.zoo`) or given as any classifier ``nn.Module``.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from PIL import Image
from torch import nn

from .. import zoo
from ..adapter import Split, default_transform
from ..messages import first_line

#: the blank image whose transform gives the input shape of a model given as a module
_BLANK_SIDE = 32


@dataclass
class Backbone:
    """
    :param name: a shared model (:data:`line_plugin.zoo.MODELS`), ``ARCH:CHECKPOINT``, or the
        name of a model given as a module
    :param model: the classifier, in eval mode, on ``device``
    :param transform: PIL image to the model's input tensor
    :param split: the model as encoder and linear head, verified
        (:func:`line_plugin.zoo.split_backbone`)
    :param input_size: side of the model's inputs, in pixels
    :param device: the torch device the model runs on
    """

    name: str
    model: nn.Module
    transform: Callable
    split: Split
    input_size: int
    device: str = "cpu"


def load_backbone(
    backbone: Union[str, nn.Module],
    transform: Optional[Callable] = None,
    name: Optional[str] = None,
    models_dir: Optional[Union[str, Path]] = None,
    device: str = "cpu",
) -> Backbone:
    """
    :param backbone: a shared model's name, ``ARCH:CHECKPOINT`` (a timm model name or
        ``densenet_bc100``, and a checkpoint file), or a classifier
    :param transform: PIL image to input tensor, of a fixed size (default: a named model's
        own; for a module, :func:`line_plugin.default_transform`, from timm's data config)
    :param name: for a classifier given as a module: its name (default: its class name)
    :param models_dir: the shared models folder (default: found by
        :func:`line_plugin.data.default_models_dir`)
    :param device: torch device to run the model on
    :return: the backbone, split and verified
    :raises ValueError: for an unknown name, a checkpoint that does not fit the architecture,
        or a model without an exact linear head
    :raises FileNotFoundError: if the checkpoint or the models folder is missing
    """
    if isinstance(backbone, nn.Module):
        model = backbone.eval()
        loaded = zoo.ZooModel(name or type(model).__name__, model, default_transform(model))
    else:
        loaded = load_zoo_model(str(backbone), models_dir)
    if transform is not None or isinstance(backbone, nn.Module):
        loaded.transform = transform or loaded.transform
        blank = loaded.transform(Image.new("RGB", (_BLANK_SIDE, _BLANK_SIDE)))
        loaded.spec["input_size"] = int(blank.shape[-1])  # the probe of the split
    loaded.model.to(device)
    size = int(loaded.spec.get("input_size", _BLANK_SIDE))
    return Backbone(
        loaded.name, loaded.model, loaded.transform, zoo.split_backbone(loaded), size, device
    )


def load_zoo_model(name: str, models_dir: Optional[Union[str, Path]] = None) -> zoo.ZooModel:
    """
    :param name: a key of :data:`line_plugin.zoo.MODELS`, or ``ARCH:CHECKPOINT``
    :param models_dir: the shared models folder
    :return: the model in eval mode, on the CPU, with its transform
    :raises ValueError: for an unknown name or a checkpoint that does not fit the architecture
    :raises FileNotFoundError: if the checkpoint or the models folder is missing
    """
    if name in zoo.MODELS:
        if models_dir is not None and not Path(models_dir).is_dir():
            raise FileNotFoundError(
                f"models folder {str(models_dir)!r} does not exist (--models, models_dir=)"
            )
        return zoo.load_model(name, models_dir)
    arch, sep, path = name.partition(":")
    if not sep or not arch or not path:
        raise ValueError(
            f"unknown backbone {name!r}; use one of {', '.join(zoo.MODELS)} "
            "or ARCH:CHECKPOINT (e.g. resnet18:model.pt)"
        )
    try:
        return zoo.load_checkpoint(arch, path, name=name)
    except (ValueError, RuntimeError, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(f"cannot load {path!r} as a {arch} model: {first_line(e)}") from e
