"""
:func:`split_model`: a classifier as penultimate features plus one exact linear head.

Routes, in order (the first that reproduces the logits wins):

1. timm models: the layer(s) named by ``pretrained_cfg['classifier']`` (or the linear layers
   inside a named wrapper), combined into one head by :func:`~.head.fit_mix`;
2. any model: every ``nn.Linear`` and ``nn.Conv2d``, of which the fit keeps those whose outputs
   make the logits (for torchvision models, the last ``nn.Linear``).

On either route, an ``nn.Linear`` applied to every token counts where one token's output (or the
mean over tokens) is the logits: CLIP's attention pooling (timm's ``resnet*_clip``) projects every
token and keeps the first, so the features are the first token's input (:mod:`.tokens`).

Every split is checked on a probe batch through its own encoder; a model whose logits no split
reproduces is refused. A zero-initialised classifier is split and checked with random weights in
its place (:mod:`.zero_heads`), never written into the model.

.. autofunction:: line_plugin.adapter.split_model

.. autoclass:: line_plugin.adapter.Split
    :members: route

.. autoclass:: line_plugin.adapter.NoLinearHeadError
"""

from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .encoder import ClassifierInputs
from .head import (
    Candidates,
    LinearHead,
    NoExactHead,
    assemble,
    candidates,
    fit_mix,
    module_affine,
    relative_error,
)
from .probes import default_probes
from .timm_config import classifier_layers, is_encoder_only, timm_cfg
from .tokens import is_token_classifier
from .trace import LayerCall, trace
from .zero_heads import random_weights, zero_layers

RTOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2}
DEFAULT_RTOL = 1e-4
CFG_ROUTE = "pretrained_cfg['classifier']"
GENERIC_ROUTE = "linear layers"


class NoLinearHeadError(NotImplementedError, ValueError):
    """
    No linear head reproduces the model's logits (VOLO, SqueezeNet): the model is refused.

    Both a :class:`NotImplementedError` (a limit of the method, not a misuse) and a
    :class:`ValueError` (so that callers catching bad models with one type catch it too).
    """


class Split(NamedTuple):
    """
    A classifier split into penultimate features and its linear head.

    Unpacks as ``encoder, weight, bias``: ``encoder(x) @ weight.T + bias`` equals ``model(x)``
    in evaluation mode.

    :param encoder: the features, :math:`B \\times D`, taken from the wrapped model
    :param weight: :math:`K \\times D`, float32, detached copy
    :param bias: :math:`K`, float32, detached copy (zeros where the classifier has none)
    """

    encoder: ClassifierInputs
    weight: Tensor
    bias: Tensor

    @property
    def route(self) -> str:
        """How the head was found, e.g. ``"pretrained_cfg['classifier']: head"``."""
        return self.encoder.route


def split_model(model: nn.Module, probe: Optional[Tensor] = None) -> Split:
    """
    Split a classifier into an encoder of penultimate features and one exact linear head.

    The features are the input(s) of the final linear layer(s), captured by hooks while the model
    runs; where several layers make the logits (distilled or multi-branch models), their inputs
    are concatenated and their weights combined. A final linear layer applied to every token, of
    which one token's output is the logits (CLIP attention pooling), gives that token's input (and
    one whose mean over tokens is the logits, the mean of its inputs). The split is checked on a
    probe batch.

    A classifier whose weights are all zero (timm zero-initialises some heads) gives the same
    logits for any features: its split is found and checked with random weights in its place,
    passed to each pass as replacement parameters, and then applied to its own weights.

    The model is put in evaluation mode (distilled timm models return tuples in training mode) and
    is otherwise left as it was: hooks are removed after each pass, no parameter is written, and
    the probe comes from a private random generator.

    :param model: a timm or torchvision classifier, or any ``nn.Module`` whose logits come from
        linear layers
    :param probe: a batch the model accepts, used to find and check the split; by default a
        random batch of 4 of the input the model declares (its ``in_chans`` and ``img_size``,
        then its ``pretrained_cfg``), failing that of its first layer's input at 224 pixels
    :return: ``Split(encoder, weight, bias)``; ``split.route`` says how the head was found
    :raises ValueError: if the model has no classifier (``num_classes=0``, encoder-only timm
        models), its output is not a :math:`B \\times K` tensor, it rejects every probe, or its
        logits are all zero on the probe without a zero-initialised classifier to explain it
    :raises NoLinearHeadError: (a ``NotImplementedError`` and a ``ValueError``) if no linear
        head reproduces the logits (VOLO, whose logits add a max over tokens; SqueezeNet)
    """
    name = type(model).__name__
    model.eval()
    _check_has_classifier(model)
    cfg_names = classifier_layers(model)
    all_names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    traced = list(dict.fromkeys(cfg_names + all_names))
    logits, calls, probe = _trace_probe(model, probe, traced)
    rtol = RTOL.get(logits.dtype, DEFAULT_RTOL)
    classes = logits.shape[1]
    zeros = zero_layers(model, classes)
    params = random_weights(model, zeros)
    if not params and not logits.abs().max() > 0:
        raise ValueError(
            f"{name} gave all-zero logits on the probe batch, and none of its layers with "
            f"{classes} outputs is zero: the split cannot be checked"
        )
    per_token = classes if _has_token_layers(calls, classes) else None
    if params or per_token:
        # the split is found and checked with random weights in the zero layers, then applied;
        # linear layers applied to every token are traced again, now keeping their inputs
        test_logits, test_calls = trace(model, probe, traced, params=params, per_token=per_token)
    else:
        test_logits, test_calls = logits, calls
    outputs = _perturbed_outputs(model, probe, test_calls, test_logits, rtol, params)
    with_random = f"with random weights in the zero-initialised {', '.join(zeros)}: " * bool(zeros)

    reasons: Dict[str, List[str]] = {}
    routes = [(CFG_ROUTE, cfg_names)] if cfg_names else []
    for route, names in routes + [(GENERIC_ROUTE, all_names)]:
        wanted = set(names)
        try:
            calls_here = [c for c in test_calls if c.name in wanted]
            found = candidates(calls_here, classes, rtol, params, test_logits, outputs)
            coefs = fit_mix(found, *outputs, rtol)
            head = assemble(found, coefs)
            label = f"{route}: {head.description}"
            _check(model, head, probe, test_logits, rtol, params, label)
            if params:
                own = {c.name: module_affine(c.name, c.module) for c in found.calls}
                head = assemble(Candidates(found.calls, own, [], found.tokens), coefs)
                label += " (zero-initialised: checked with random weights)"
                _check(model, head, probe, logits, rtol, {}, label)
            encoder = ClassifierInputs(model, head.layers, label, head.tokens)
            return Split(encoder, head.weight.float(), head.bias.float())
        except NoExactHead as err:
            reasons.setdefault(with_random + str(err), []).append(route)
    why = " | ".join(f"{' and '.join(labels)}: {err}" for err, labels in reasons.items())
    raise NoLinearHeadError(f"{name}: no linear head reproduces its logits ({why})")


def _perturbed_outputs(
    model: nn.Module,
    probe: Tensor,
    calls: List[LayerCall],
    logits: Tensor,
    rtol: float,
    params: Dict[str, Tensor],
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Logits and candidates' outputs of one more pass, with noise added to those outputs."""
    found = candidates(calls, logits.shape[1], rtol, params, logits)
    if not found.calls:
        return logits, {}
    generator = torch.Generator().manual_seed(1)
    scale = logits.abs().max()
    noise = {
        call.name: scale * torch.randn(call.output.shape, generator=generator).to(call.output)
        for call in found.calls
    }
    noisy_logits, noisy_calls = trace(model, probe, list(noise), noise, params, logits.shape[1])
    return noisy_logits, {call.name: call.output for call in noisy_calls}


def _has_token_layers(calls: List[LayerCall], classes: int) -> bool:
    """Whether an ``nn.Linear`` gave ``classes`` values for each of several tokens, unrecorded."""
    return any(
        call.input is None and is_token_classifier(call.module, call.output_shape, classes)
        for call in calls
    )


def _check_has_classifier(model: nn.Module) -> None:
    name = type(model).__name__
    if is_encoder_only(model):
        architecture = timm_cfg(model).get("architecture", "timm model")
        raise ValueError(
            f"{name} ({architecture}) is an encoder without a "
            "classifier: there is no weight to split off"
        )
    if getattr(model, "num_classes", None) == 0:
        raise ValueError(
            f"{name} has num_classes=0: it has no classifier to split off; create it with "
            "num_classes > 0"
        )


def _trace_probe(
    model: nn.Module, probe: Optional[Tensor], names: Sequence[str]
) -> Tuple[Tensor, List[LayerCall], Tensor]:
    name = type(model).__name__
    names = list(dict.fromkeys(names))
    probes: Iterable[Tensor] = default_probes(model) if probe is None else [probe]
    errors, last_error = [], None
    for x in probes:
        try:
            logits, calls = trace(model, x, names)
        except Exception as err:  # a probe of the wrong size: try the next one
            errors.append(f"{tuple(x.shape)}: {type(err).__name__}: {err}")
            last_error = err
            continue
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            kind = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"{name} returned {kind} in eval mode, not B x K logits")
        if not logits.is_floating_point() or not torch.isfinite(logits).all():
            raise ValueError(f"{name} gave non-finite or non-float logits on the probe batch")
        return logits, calls, x
    hint = "the probe given" if probe is not None else "every default probe; pass probe="
    raise ValueError(f"{name} rejected {hint}: " + "; ".join(errors)) from last_error


def _check(
    model: nn.Module,
    head: LinearHead,
    probe: Tensor,
    logits: Tensor,
    rtol: float,
    params: Dict[str, Tensor],
    label: str,
) -> None:
    """Raise :class:`NoExactHead` unless the head, on its own encoder, gives the logits."""
    encoder = ClassifierInputs(model, head.layers, label, head.tokens)
    own = {f"model.{key}": value for key, value in params.items()}
    with torch.no_grad():
        features = torch.func.functional_call(encoder, own, (probe,)) if own else encoder(probe)
    if features.shape[1] != head.weight.shape[1]:
        raise NoExactHead(
            f"{features.shape[1]} features for a head of {head.weight.shape[1]} inputs"
        )
    estimate = features.float() @ head.weight.float().T + head.bias.float()
    error = relative_error(estimate, logits.float())
    if not error <= rtol:
        raise NoExactHead(f"{label} is off by {error:.2g} (relative) on the probe batch")
