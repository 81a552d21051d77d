"""
A loaded classifier (:class:`ZooModel`: the model, its input transform and its spec), the
transform its spec gives (:func:`input_transform`), and its split into features and linear head
(:func:`split_backbone`) for the application (the command line and the evaluation).
"""

from dataclasses import dataclass, field
from typing import Callable, Dict

import torch
from torch import nn

from ..adapter import Split, default_transform, split_model


@dataclass
class ZooModel:
    """
    A trained classifier with its input transform.

    :param name: the name it was loaded by
    :param model: the classifier, in eval mode, on the CPU
    :param transform: PIL image to normalised tensor (ToTensor, Normalize; Resize if needed)
    :param spec: architecture and training facts (``arch``, ``mean``, ``std``, ``input_size``, ...)
    """

    name: str
    model: nn.Module
    transform: Callable
    spec: Dict = field(default_factory=dict)


def input_transform(model: nn.Module, spec: Dict) -> Callable:
    """
    The transform of a zoo model: any PIL image resized (shorter side, bilinear) and center-cropped
    to the model's input size unless it has that size, then normalised; built by
    :func:`line_plugin.default_transform`. On 32 x 32 CIFAR images it is ``ToTensor`` and
    ``Normalize`` alone.

    :param model: the classifier
    :param spec: its ``mean``, ``std`` and ``input_size`` (side length)
    :return: PIL image to normalised :math:`3 \\times S \\times S` tensor
    """
    size = int(spec["input_size"])
    return default_transform(
        model,
        input_size=(3, size, size),
        mean=tuple(spec["mean"]),
        std=tuple(spec["std"]),
        crop_pct=1.0,
        crop_mode="center",
        interpolation="bilinear",
    )


def split_backbone(model: ZooModel) -> Split:
    """
    The classifier as encoder and linear head, by :func:`line_plugin.adapter.split_model`,
    checked on a fixed random batch at the model's input size on the model's device.

    :param model: a loaded model (its ``spec`` gives the input size)
    :return: ``encoder, weight, bias`` with ``encoder(x) @ weight.T + bias == model(x)``;
        ``weight`` and ``bias`` are float32 copies on the model's device
    :raises ValueError: if no exact linear head is found
    """
    size = int(model.spec.get("input_size", 32))
    device = next(model.model.parameters()).device
    probe = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    return split_model(model.model, probe=probe.to(device))
