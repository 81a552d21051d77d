"""
One exact linear head rebuilt from the layers that produce a classifier's logits.

Candidates are the ``nn.Linear`` layers (and ``nn.Conv2d`` layers whose kernel covers their input)
that give one value per class, and the ``nn.Linear`` layers applied to every token of which one
token's output (or the mean over tokens) is the logits (:mod:`.tokens`): their feature block is
that token's input (or the mean of the inputs). Which of them make the logits, and with which
fixed weights (1; 1/2 and 1/2 for distilled models; softmax weights for per-stage heads), is
measured rather than guessed: known noise is added to each candidate's output in one more
forward pass, and the change of the logits is fitted, by least squares, as a mix of those
outputs. The noise keeps the fit well posed even where a layer's own output is tiny, and layers
the logits do not depend on (a squeeze-excitation convolution with as many channels as classes)
get weight 0 and are dropped. Layers that share one input (at the same token) then add their
weights; layers with different inputs have their inputs concatenated and their weights set side
by side.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .probes import Probe
from .tokens import MEAN, Token, is_token_classifier, logit_tokens, select
from .trace import LayerCall
from .verify import NoExactHead, relative_error

SNAP_DENOMINATORS = (1, 2, 3, 4)
SNAP_TOLERANCE = 1e-6
DROP_TOLERANCE = 1e-6


@dataclass
class Candidates:
    """
    Layers that may make the logits, with their weights and biases (float64).

    :param calls: the layers, as traced on the clean probe
    :param affine: weight :math:`K \\times D_j` and bias :math:`K` by layer name
    :param reasons: why other layers that give :math:`K` values were left out
    :param tokens: for layers applied to every token, the token whose output is used (an index,
        or :data:`~.tokens.MEAN`), by layer name
    """

    calls: List[LayerCall]
    affine: Dict[str, Tuple[Tensor, Tensor]]
    reasons: List[str]
    tokens: Dict[str, Token] = field(default_factory=dict)


@dataclass
class LinearHead:
    """
    Logits as ``features @ weight.T + bias``, the features being the concatenated, flattened
    inputs of ``layers`` (of per-token layers, the input at one token or the mean over tokens).

    :param layers: one layer name per feature block, in the order the blocks are concatenated
    :param weight: :math:`K \\times D`, float64
    :param bias: :math:`K`, float64
    :param description: the mix found, e.g. ``"0.5 head + 0.5 head_dist, inputs concatenated"``
    :param tokens: one entry per layer: ``None`` for the whole input, else the token (an index, or
        :data:`~.tokens.MEAN`), as :func:`~.tokens.select` takes it
    """

    layers: Tuple[str, ...]
    weight: Tensor
    bias: Tensor
    description: str
    tokens: Tuple[Optional[Token], ...] = ()


def candidates(calls: Sequence[LayerCall], probe: Probe) -> Candidates:
    """
    The traced layers that give :math:`K` values per sample as an affine map of their input.

    A linear layer applied to every token (output :math:`B \\times T \\times K`) is a candidate
    only at the first token whose output, times one fixed factor, is the logits on the probe, and
    on the noisy pass if it ran (or at the mean over tokens, if no token is).

    :param calls: layers traced on the probe
    :param probe: the probe: its logits, tolerance, replacement parameters, and the noisy pass's
        logits and outputs once measured
    :return: the candidates, and the reasons for leaving out near misses
    """
    num_classes = probe.classes
    found = Candidates([], {}, [])
    for call in calls:
        per_token = call.output is not None and is_token_classifier(
            call.module, call.output_shape, num_classes
        )
        if call.output is None or (call.output[0].numel() != num_classes and not per_token):
            if num_classes in call.output_shape[1:]:
                shape = _shape(call.output_shape)
                found.reasons.append(
                    f"{call.name} gives {shape} values per sample, not one vector of logits"
                )
            continue
        if call.calls != 1:
            found.reasons.append(f"{call.name} runs {call.calls} times per forward pass")
            continue
        try:
            affine = layer_affine(call, probe, per_token)
        except NoExactHead as err:
            found.reasons.append(str(err))
            continue
        if per_token:
            tokens = logit_tokens(call.output, probe.logits, probe.rtol)
            if call.name in probe.noisy_outputs:
                noisy = probe.noisy_outputs[call.name]
                again = logit_tokens(noisy, probe.noisy_logits, probe.rtol)
                tokens = [token for token in tokens if token in again]
            if not tokens:
                found.reasons.append(
                    f"{call.name} gives {_shape(call.output_shape)} values per sample, and "
                    "neither one token's output nor their mean is the logits"
                )
                continue
            found.tokens[call.name] = tokens[0]
        found.affine[call.name] = affine
        found.calls.append(call)
    return found


def layer_affine(call: LayerCall, probe: Probe, per_token: bool = False) -> Tuple[Tensor, Tensor]:
    """
    The weight and bias, float64, of a layer as a map of its flattened input, checked.

    :param call: the traced layer: an ``nn.Linear`` (on one vector per sample, or on every token),
        or an ``nn.Conv2d`` whose kernel covers its whole input (a 1x1 convolution on pooled
        features)
    :param probe: the probe it was traced on: the tolerance of the check on the traced input, and
        the parameters that replaced the model's own
    :param per_token: whether the layer is an ``nn.Linear`` applied to every token, its map
        checked on each token (:math:`D` inputs per token) rather than on the flattened sample
    :return: weight :math:`K \\times D` and bias :math:`K`
    :raises NoExactHead: if the layer is of another kind, or does not compute that map
    """
    module, inp = call.module, call.input
    if not (
        isinstance(module, nn.Linear)
        or (isinstance(module, nn.Conv2d) and _conv_covers_input(module, inp))
    ):
        raise NoExactHead(f"{call.name} ({type(module).__name__}) is not a linear layer")
    weight, bias = module_affine(call.name, module, probe.params)
    x = _rows(inp, per_token).double()
    if x.shape[1] != weight.shape[1]:
        raise NoExactHead(f"{call.name} has {x.shape[1]} inputs per sample, not {weight.shape[1]}")
    error = relative_error(x @ weight.T + bias, _rows(call.output, per_token).double())
    if error > probe.rtol:
        raise NoExactHead(
            f"{call.name} ({type(module).__name__}) does not compute input @ weight.T + bias "
            f"(relative error {error:.2g})"
        )
    return weight, bias


def module_affine(
    name: str, module: nn.Module, params: Optional[Dict[str, Tensor]] = None
) -> Tuple[Tensor, Tensor]:
    """
    The weight, flattened per output, and bias (zeros if none) of a linear or convolution layer.

    :param name: the layer's name in the model, to look its parameters up in ``params``
    :param module: an ``nn.Linear`` or ``nn.Conv2d``
    :param params: tensors that replace the layer's own, by parameter name in the model
    :return: weight :math:`K \\times D` and bias :math:`K`, float64, detached
    """
    params, prefix = params or {}, f"{name}." if name else ""
    weight = params.get(prefix + "weight", module.weight).detach().flatten(1).double()
    bias = params.get(prefix + "bias", module.bias)
    bias = torch.zeros_like(weight[:, 0]) if bias is None else bias.detach().double()
    return weight, bias


def fit_mix(found: Candidates, probe: Probe) -> List[float]:
    """
    Fit the logits of the noisy pass as a fixed mix of the candidates' outputs in that pass.

    :param found: the candidates
    :param probe: the probe, after its noisy pass: its logits :math:`B \\times K`, with noise
        added to the candidates, and the candidates' outputs (noise included) by name (of
        per-token layers, all tokens: the token in ``found.tokens`` is taken here); and the
        largest error allowed, relative to the largest logit
    :return: one weight per candidate, in the order of ``found.calls`` (0 for those left out)
    :raises NoExactHead: if no fixed mix of the candidates reproduces the logits
    """
    if not found.calls:
        near = f" ({'; '.join(found.reasons)})" if found.reasons else ""
        raise NoExactHead(f"no linear layer gives {probe.classes} values per sample{near}")
    columns = [_column(found, call.name, probe.noisy_outputs[call.name]) for call in found.calls]
    try:
        coefs = _fit_mix(probe.noisy_logits, columns, probe.rtol)
    except NoExactHead as err:
        names = ", ".join(call.name for call in found.calls)
        near = f"; {'; '.join(found.reasons)}" if found.reasons else ""
        raise NoExactHead(f"the logits are no fixed mix of {names}: {err}{near}") from None
    return coefs


def _rows(values: Tensor, per_token: bool) -> Tensor:
    """One row per vector the layer maps: each token, or each sample flattened."""
    return values.flatten(0, -2) if per_token else values.flatten(1)


def _column(found: Candidates, name: str, output: Tensor) -> Tensor:
    return select(output, found.tokens[name]) if name in found.tokens else output


def _conv_covers_input(conv: nn.Conv2d, inp: Tensor) -> bool:
    return (
        inp.dim() == 4
        and tuple(inp.shape[2:]) == tuple(conv.kernel_size)
        and conv.groups == 1
        and (conv.kernel_size == (1, 1) or conv.padding in ((0, 0), "valid"))
        and conv.padding_mode == "zeros"
    )


def _fit_mix(logits: Tensor, columns: List[Tensor], rtol: float) -> List[float]:
    target = logits.flatten().double()
    outputs = torch.stack([column.flatten().double() for column in columns], dim=1)
    if outputs.shape[0] < 2 * outputs.shape[1]:
        raise NoExactHead("too few logits in the probe batch to fit: pass a larger probe")
    coefs = torch.linalg.lstsq(outputs, target.unsqueeze(1)).solution.squeeze(1)
    keep = coefs.abs() > DROP_TOLERANCE * coefs.abs().max()
    if not keep.any():
        raise NoExactHead("the logits depend on none of them")
    coefs = torch.linalg.lstsq(outputs[:, keep], target.unsqueeze(1)).solution.squeeze(1)
    coefs = torch.tensor([_snap(float(c)) for c in coefs], dtype=torch.float64)
    error = relative_error(outputs[:, keep] @ coefs, target)
    if error > rtol:
        raise NoExactHead(f"relative error {error:.2g}")
    kept = iter(coefs.tolist())
    return [next(kept) if k else 0.0 for k in keep.tolist()]


def assemble(found: Candidates, coefs: List[float]) -> LinearHead:
    """
    One head from a mix of candidates: shared inputs add their weights, others are concatenated.

    :param found: the candidates, with the weights and biases to mix
    :param coefs: one weight per candidate, as :func:`fit_mix` gives them
    :return: the head
    """
    groups: "OrderedDict[tuple, List[Tuple[float, LayerCall]]]" = OrderedDict()
    for coef, call in zip(coefs, found.calls):
        if coef != 0.0:
            key = (call.input_key, found.tokens.get(call.name))
            groups.setdefault(key, []).append((coef, call))
    blocks, bias, parts = [], 0.0, []
    for key, group in groups.items():
        block = 0.0
        for coef, call in group:
            weight, layer_bias = found.affine[call.name]
            block = block + coef * weight
            bias = bias + coef * layer_bias
        blocks.append(block)
        terms = " + ".join(_term(coef, _label(call.name, key[1])) for coef, call in group)
        parts.append(f"({terms}) on one shared input" if len(group) > 1 else terms)
    description = " + ".join(parts)
    if len(groups) > 1:
        description += ", inputs concatenated"
    layers = tuple(group[0][1].name for group in groups.values())
    tokens = tuple(key[1] for key in groups)
    return LinearHead(layers, torch.cat(blocks, dim=1), bias, description, tokens)


def _snap(value: float) -> float:
    for denominator in SNAP_DENOMINATORS:
        fraction = round(value * denominator) / denominator
        if abs(value - fraction) <= SNAP_TOLERANCE:
            return fraction
    return value


def _label(name: str, token: Optional[Token]) -> str:
    if token is None:
        return name
    return f"{name} mean over tokens" if token == MEAN else f"{name} at token {token}"


def _term(coef: float, name: str) -> str:
    return name if coef == 1.0 else f"{coef:.4g} {name}"


def _shape(shape: Tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape[1:])
