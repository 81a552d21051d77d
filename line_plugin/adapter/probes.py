"""
Probe batches: small random batches of the input a model declares, most likely first.

Probes are drawn from a private generator, so that the global random state is left untouched.
"""

from typing import Iterator, Tuple

import torch
from torch import Tensor, nn

from .timm_config import declared_channels, declared_sizes

PROBE_BATCH = 4
FALLBACK_SIZE = (224, 224)


def default_probes(model: nn.Module, batch_size: int = PROBE_BATCH) -> Iterator[Tensor]:
    """
    Random batches of each input shape the model may expect, most likely first.

    Images take the channels and sizes the model declares (:mod:`.timm_config`: its own
    ``in_chans`` and ``img_size``, then its ``pretrained_cfg``) before those its first layer
    suggests (the stem's input channels; 224 pixels). A model without a config whose first layer
    is an ``nn.Linear`` is probed with vectors first.

    :param model: the classifier
    :param batch_size: samples per probe
    :return: an iterator of probes on the model's device, in its floating-point type
    """
    ref = next((t for t in model.parameters() if t.is_floating_point()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None else torch.float32
    generator = torch.Generator().manual_seed(0)
    for shape in dict.fromkeys(input_shapes(model)):
        x = torch.randn((batch_size, *shape), generator=generator)
        yield x.to(device=device, dtype=dtype)


def input_shapes(model: nn.Module) -> Iterator[Tuple[int, ...]]:
    """
    The per-sample input shapes to probe, most likely first (possibly repeated).

    :param model: the classifier
    :return: shapes such as ``(3, 224, 224)`` or ``(12,)``
    """
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    channels = list(declared_channels(model))
    sizes = list(declared_sizes(model))
    if isinstance(first, nn.Linear) and not channels and not sizes:
        yield (first.in_features,)
    if isinstance(first, nn.Conv2d):
        # the stem's channels come last: TResNet's first convolution follows a space-to-depth
        # step and takes 48 channels for 3-channel images
        channels.append(first.in_channels)
    # a wrong channel count fails at the first layer, a wrong size possibly much later: sizes
    # vary slowest
    for size in sizes + [FALLBACK_SIZE]:
        for chans in channels or [3]:
            yield (chans, *size)
