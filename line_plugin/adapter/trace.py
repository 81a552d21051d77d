"""
One traced forward pass over the probe: the logits, and the inputs and outputs of chosen layers.

A pass runs with the probe's replacement parameters in place (:attr:`.Probe.params`, as
:func:`torch.func.functional_call` takes them): the model's own tensors are swapped back
afterwards, even on error. :func:`noisy_pass` is the pass every split is verified on besides the
probe: seeded noise, as large as the largest logit, added to the outputs of the layers that may
make the logits, so that how the logits move shows which of them do (the timm head API's
classifier, or the candidates of the layer routes).
"""

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .probes import Probe
from .tokens import is_token_classifier

NOISE_SEED = 1


@dataclass
class LayerCall:
    """
    What one layer saw and gave during a traced forward pass (its first call).

    :param name: the layer's name in ``model.named_modules()``
    :param module: the layer
    :param output_shape: the shape of its output
    :param input: a copy of its first positional input; ``None`` unless the output is one vector
        per sample, or the layer is an ``nn.Linear`` applied to every token and giving the number
        of outputs asked for (other layers cannot give logits, and are recorded for messages only)
    :param output: a copy of its output, or ``None`` as for ``input``
    :param input_key: where the input lay in memory: layers with equal keys shared one input
    :param calls: how often the layer ran in the pass
    :param noise: what was added to its output, in a pass with noise (:func:`noisy_pass`)
    """

    name: str
    module: nn.Module
    output_shape: Tuple[int, ...]
    input: Optional[Tensor] = None
    output: Optional[Tensor] = None
    input_key: tuple = ()
    calls: int = 1
    noise: Optional[Tensor] = None
    _keep: List[Tensor] = field(default_factory=list, repr=False)


def trace(
    model: nn.Module,
    probe: Probe,
    names: Sequence[str],
    noise: Optional[Callable[[Tensor], Tensor]] = None,
) -> Tuple[Tensor, List[LayerCall]]:
    """
    Run the model on the probe without gradients, recording the layers named.

    Layers whose output is one vector per sample keep copies of their input and output, and so do
    ``nn.Linear`` layers applied to every token whose output is :math:`B \\times \\dots \\times K`
    (the logits may be one token's output), and every layer in a pass with noise; the others
    cannot give logits and keep their output shape only.

    :param model: the classifier, in evaluation mode
    :param probe: the batch, the number of logits :math:`K` and the replacement parameters
    :param names: names of the layers to record
    :param noise: draws the tensor added to the first output of each of those layers, given that
        output, in the order the layers run; the records hold the perturbed outputs and the noise
    :return: the model's output and the records, in the order the layers first ran
    """
    records: Dict[str, LayerCall] = {}
    counts: Dict[str, int] = dict.fromkeys(names, 0)
    handles = [
        model.get_submodule(name).register_forward_hook(
            partial(_record, records, counts, noise, probe.classes, name)
        )
        for name in names
    ]
    try:
        output = probe.run(model)
    finally:
        for handle in handles:
            handle.remove()
    for call in records.values():
        call.calls = counts[call.name]
        call._keep.clear()
    return output, list(records.values())


def noisy_pass(
    model: nn.Module, probe: Probe, names: Sequence[str]
) -> Tuple[Probe, List[LayerCall]]:
    """
    The pass with noise: :func:`trace` with seeded Gaussian noise, scaled to the largest logit on
    the probe, added to the first output of each layer named.

    :param model: the classifier, in evaluation mode
    :param probe: the probe
    :param names: the layers that may make the logits
    :return: the probe with the noise, the logits and those layers' outputs (noise included) of
        this pass (:attr:`.Probe.noise`, :attr:`.Probe.noisy_logits`,
        :attr:`.Probe.noisy_outputs`), and the pass's records (inputs and call counts as well)
    """
    generator = torch.Generator().manual_seed(NOISE_SEED)
    scale = probe.logits.abs().max()

    def draw(output: Tensor) -> Tensor:
        return scale * torch.randn(output.shape, generator=generator).to(output)

    logits, calls = trace(model, probe, names, draw)
    noisy = dataclasses.replace(
        probe,
        noise={call.name: call.noise for call in calls},
        noisy_logits=logits,
        noisy_outputs={call.name: call.output for call in calls},
    )
    return noisy, calls


def _record(
    records: Dict[str, LayerCall],
    counts: Dict[str, int],
    noise: Optional[Callable[[Tensor], Tensor]],
    classes: int,
    name: str,
    module: nn.Module,
    args: tuple,
    output: object,
) -> Optional[Tensor]:
    counts[name] += 1
    if counts[name] > 1 or not isinstance(output, Tensor) or output.dim() < 1:
        return None
    call = LayerCall(name, module, tuple(output.shape))
    if noise is not None:
        call.noise = noise(output)
        output = output + call.noise
    inp = args[0] if args else None
    vector = output.dim() >= 2 and output[0].numel() == max(output.shape[1:])
    tokens = is_token_classifier(module, output.shape, classes)
    if (vector or tokens or noise is not None) and isinstance(inp, Tensor):
        storage = inp.untyped_storage().data_ptr()
        call.input_key = (storage, inp.storage_offset(), tuple(inp.shape), inp.stride())
        call.input, call.output = inp.clone(), output.clone()
        # Holding the input alive during the pass keeps its memory, and so its key, unique.
        call._keep.append(inp)
    records[name] = call
    return None if noise is None else output
