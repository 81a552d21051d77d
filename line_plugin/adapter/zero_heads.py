"""
Zero-initialised classifiers: found, and given random weights for the passes that find the split.

timm initialises some heads to zero (MLP-Mixer, ResMLP, gMLP, Sequencer, Hiera): the logits of
a fresh model are then all equal, whatever the features, and cannot show which features make
them. The split is found and checked with random weights in those layers instead, passed to each
traced pass as replacement parameters (the model's own tensors are never written), and then
applied to the model's own weights. The structure found (which layers, mixed how, on which
inputs) holds for any weights of those layers, trained ones included.
"""

from typing import Dict, List

import torch
from torch import Tensor, nn

SEED = 2


def zero_layers(model: nn.Module, num_classes: int) -> List[str]:
    """
    The ``nn.Linear`` and ``nn.Conv2d`` layers with ``num_classes`` outputs and all-zero weights.

    :param model: the classifier
    :param num_classes: :math:`K`, the number of logits
    :return: their names as in ``model.named_modules()``
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            outputs = module.out_features
        elif isinstance(module, nn.Conv2d):
            outputs = module.out_channels
        else:
            continue
        if outputs == num_classes and not module.weight.detach().any():
            names.append(name)
    return names


def random_weights(model: nn.Module, layers: List[str]) -> Dict[str, Tensor]:
    """
    Random weights and biases for some layers, as replacement parameters.

    Weights are normal with variance ``1 / fan_in``, biases standard normal, both drawn from a
    private generator (the global random state is left untouched), in each parameter's type and
    on its device.

    :param model: the classifier
    :param layers: names of ``nn.Linear`` or ``nn.Conv2d`` layers
    :return: tensors by parameter name (``"head.fc.weight"``, ``"head.fc.bias"``), for
        :func:`torch.func.functional_call`
    """
    generator = torch.Generator().manual_seed(SEED)
    params = {}
    for layer in layers:
        module = model.get_submodule(layer)
        prefix = f"{layer}." if layer else ""
        for kind in ("weight", "bias"):
            own = getattr(module, kind)
            if own is None:
                continue
            scale = module.weight[0].numel() ** -0.5 if kind == "weight" else 1.0
            value = scale * torch.randn(own.shape, generator=generator, dtype=torch.float64)
            params[prefix + kind] = value.to(device=own.device, dtype=own.dtype)
    return params
