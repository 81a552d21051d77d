"""
One traced forward pass over the probe: the logits, and the inputs and outputs of chosen layers.

A pass runs with the probe's replacement parameters in place (:attr:`.Probe.params`, as
:func:`torch.func.functional_call` takes them): the model's own tensors are swapped back
afterwards, even on error.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

from torch import Tensor, nn

from .probes import Probe
from .tokens import is_token_classifier


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
    """

    name: str
    module: nn.Module
    output_shape: Tuple[int, ...]
    input: Optional[Tensor] = None
    output: Optional[Tensor] = None
    input_key: tuple = ()
    calls: int = 1
    _keep: List[Tensor] = field(default_factory=list, repr=False)


def trace(
    model: nn.Module,
    probe: Probe,
    names: Sequence[str],
    noise: Optional[Dict[str, Tensor]] = None,
) -> Tuple[Tensor, List[LayerCall]]:
    """
    Run the model on the probe without gradients, recording the layers named.

    Layers whose output is one vector per sample keep copies of their input and output, and so do
    ``nn.Linear`` layers applied to every token whose output is :math:`B \\times \\dots \\times K`
    (the logits may be one token's output); the others cannot give logits and keep their output
    shape only.

    :param model: the classifier, in evaluation mode
    :param probe: the batch, the number of logits :math:`K` and the replacement parameters
    :param names: names of the layers to record
    :param noise: tensors to add to the outputs of some of those layers (by name); the records
        hold the perturbed outputs
    :return: the model's output and the records, in the order the layers first ran
    """
    records: Dict[str, LayerCall] = {}
    counts: Dict[str, int] = dict.fromkeys(names, 0)
    handles = [
        model.get_submodule(name).register_forward_hook(
            partial(_record, records, counts, noise or {}, probe.classes, name)
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


def _record(
    records: Dict[str, LayerCall],
    counts: Dict[str, int],
    noise: Dict[str, Tensor],
    classes: int,
    name: str,
    module: nn.Module,
    args: tuple,
    output: object,
) -> Optional[Tensor]:
    counts[name] += 1
    if counts[name] > 1 or not isinstance(output, Tensor) or output.dim() < 1:
        return None
    if name in noise:
        output = output + noise[name]
    call = LayerCall(name, module, tuple(output.shape))
    inp = args[0] if args else None
    vector = output.dim() >= 2 and output[0].numel() == max(output.shape[1:])
    tokens = is_token_classifier(module, output.shape, classes)
    if (vector or tokens) and isinstance(inp, Tensor):
        storage = inp.untyped_storage().data_ptr()
        call.input_key = (storage, inp.storage_offset(), tuple(inp.shape), inp.stride())
        call.input, call.output = inp.clone(), output.clone()
        # Holding the input alive during the pass keeps its memory, and so its key, unique.
        call._keep.append(inp)
    records[name] = call
    return output if name in noise else None
