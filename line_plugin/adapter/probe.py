"""
Probe batches and one traced forward pass: the logits, and the inputs and outputs of chosen layers.

A probe is a small random batch of the size the model expects, drawn from a private generator so
that the global random state is left untouched.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

PROBE_BATCH = 4


@dataclass
class LayerCall:
    """
    What one layer saw and gave during a traced forward pass (its first call).

    :param name: the layer's name in ``model.named_modules()``
    :param module: the layer
    :param output_shape: the shape of its output
    :param input: a copy of its first positional input; ``None`` unless the output is one vector
        per sample (other layers cannot give logits, and are recorded for messages only)
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
    probe: Tensor,
    names: Sequence[str],
    noise: Optional[Dict[str, Tensor]] = None,
) -> Tuple[Tensor, List[LayerCall]]:
    """
    Run ``model(probe)`` without gradients, recording the layers named.

    Layers whose output is one vector per sample keep copies of their input and output; the others
    cannot give logits and keep their output shape only.

    :param model: the classifier, in evaluation mode
    :param probe: a batch the model accepts
    :param names: names of the layers to record
    :param noise: tensors to add to the outputs of some of those layers (by name); the records
        hold the perturbed outputs
    :return: the model's output and the records, in the order the layers first ran
    """
    records: Dict[str, LayerCall] = {}
    counts: Dict[str, int] = dict.fromkeys(names, 0)
    handles = [
        model.get_submodule(name).register_forward_hook(
            partial(_record, records, counts, noise or {}, name)
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            output = model(probe)
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
    if vector and isinstance(inp, Tensor):
        storage = inp.untyped_storage().data_ptr()
        call.input_key = (storage, inp.storage_offset(), tuple(inp.shape), inp.stride())
        call.input, call.output = inp.clone(), output.clone()
        # Holding the input alive during the pass keeps its memory, and so its key, unique.
        call._keep.append(inp)
    records[name] = call
    return output if name in noise else None


def default_probes(model: nn.Module, batch_size: int = PROBE_BATCH) -> Iterator[Tensor]:
    """
    Random batches of each input size the model may expect, most likely first.

    The sizes come from the model's own attributes (``patch_embed.img_size``, ``img_size``,
    ``image_size``), then its ``pretrained_cfg`` / ``default_cfg`` (``input_size``,
    ``test_input_size``), then its first layer (a vector for an ``nn.Linear``, else 224 pixels).

    :param model: the classifier
    :param batch_size: samples per probe
    :return: an iterator of probes on the model's device, in its floating-point type
    """
    ref = next((t for t in model.parameters() if t.is_floating_point()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None else torch.float32
    generator = torch.Generator().manual_seed(0)
    for shape in dict.fromkeys(_input_shapes(model)):
        x = torch.randn((batch_size, *shape), generator=generator)
        yield x.to(device=device, dtype=dtype)


def _input_shapes(model: nn.Module) -> Iterator[Tuple[int, ...]]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Linear) and not cfg:
        yield (first.in_features,)
    # timm keeps the default input_size in pretrained_cfg even for in_chans=1: trust the stem
    chans = first.in_channels if isinstance(first, nn.Conv2d) else cfg.get("input_size", [3])[0]
    for size in (
        getattr(getattr(model, "patch_embed", None), "img_size", None),
        getattr(model, "img_size", None),
        getattr(model, "image_size", None),
        tuple(cfg.get("input_size", ()))[1:],
        tuple(cfg.get("test_input_size", ()))[1:],
        224,
    ):
        pair = _pair(size)
        if pair is not None:
            yield (chans, *pair)


def _pair(size: object) -> Optional[Tuple[int, int]]:
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2:
        if all(isinstance(s, int) for s in size):
            return size[0], size[1]
    return None
