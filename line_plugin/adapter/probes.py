"""
The probe: the batch a split is found and checked on, with what the model gave on it.

A :class:`Probe` carries everything the passes over the probe batch share: the batch, the logits,
the tolerance their dtype allows, the replacement weights of zero-initialised classifiers
(:mod:`.zero_heads`), and, once measured, the noise added to candidate layers and what the model
gave with it. Default batches follow the input the model declares, drawn from a private
generator (the global random state is left untouched).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from .timm_config import declared_channels, declared_sizes
from .zero_heads import random_weights, zero_layers

PROBE_BATCH = 4
FALLBACK_SIZE = (224, 224)
RTOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2}
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Probe:
    """
    A batch the model accepts, and what it gave on it.

    :param x: the batch
    :param logits: the model's output on ``x``, :math:`B \\times K`, with ``params`` in place
    :param rtol: the largest relative error a split may make on it (by the logits' dtype)
    :param params: random weights that replace the model's zero-initialised classifiers in every
        pass (by parameter name, as :func:`torch.func.functional_call` takes them); empty if none
    :param zero_layers: the names of those classifiers
    :param noise: tensors added to some layers' outputs (by layer name) in the noisy pass
    :param noisy_logits: the model's output in the noisy pass (``None`` before it ran)
    :param noisy_outputs: those layers' outputs in the noisy pass, noise included, by name
    """

    x: Tensor
    logits: Tensor
    rtol: float
    params: Dict[str, Tensor] = field(default_factory=dict)
    zero_layers: Tuple[str, ...] = ()
    noise: Dict[str, Tensor] = field(default_factory=dict)
    noisy_logits: Optional[Tensor] = None
    noisy_outputs: Dict[str, Tensor] = field(default_factory=dict)

    @property
    def classes(self) -> int:
        """:math:`K`, the number of logits."""
        return self.logits.shape[1]

    def run(self, module: nn.Module, prefix: str = "") -> Tensor:
        """
        ``module(x)`` without gradients, with ``params`` in place.

        :param module: the model, or a module that holds it
        :param prefix: where the model sits in ``module`` (``"model."`` for an encoder)
        :return: the module's output
        """
        params = {prefix + key: value for key, value in self.params.items()}
        with torch.no_grad():
            return (
                torch.func.functional_call(module, params, (self.x,)) if params else module(self.x)
            )

    def with_zero_heads(self, model: nn.Module) -> "Probe":
        """
        This probe with random weights in the model's zero-initialised classifiers, if any.

        :param model: the classifier the probe was run on
        :return: a probe whose ``params`` replace those layers and whose logits were computed so;
            this probe itself if the model has none
        """
        zeros = zero_layers(model, self.classes)
        if not zeros:
            return self
        params = random_weights(model, zeros)
        with_params = dataclasses.replace(self, params=params, zero_layers=tuple(zeros))
        return dataclasses.replace(with_params, logits=with_params.run(model))


def find_probe(model: nn.Module, x: Optional[Tensor] = None) -> Probe:
    """
    The first probe batch the model accepts, with its logits.

    :param model: the classifier, in evaluation mode
    :param x: the batch to use; by default, the first of :func:`default_probes` that runs
    :return: the probe, without replacement weights
    :raises ValueError: if the model rejects every batch, or its output is not finite
        :math:`B \\times K` floating-point logits
    """
    name = type(model).__name__
    batches: Iterable[Tensor] = default_probes(model) if x is None else [x]
    errors, last_error = [], None
    for batch in batches:
        try:
            with torch.no_grad():
                logits = model(batch)
        except Exception as err:  # a probe of the wrong size: try the next one
            errors.append(f"{tuple(batch.shape)}: {type(err).__name__}: {err}")
            last_error = err
            continue
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            kind = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"{name} returned {kind} in eval mode, not B x K logits")
        if not logits.is_floating_point() or not torch.isfinite(logits).all():
            raise ValueError(f"{name} gave non-finite or non-float logits on the probe batch")
        return Probe(batch, logits, RTOL.get(logits.dtype, DEFAULT_RTOL))
    hint = "the probe given" if x is not None else "every default probe; pass probe="
    raise ValueError(f"{name} rejected {hint}: " + "; ".join(errors)) from last_error


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
