"""
:func:`split_model`: a classifier as penultimate features plus one exact linear head.

Routes, in order (the first that reproduces the logits wins):

1. timm models: the layer(s) named by ``pretrained_cfg['classifier']`` (or the linear layers
   inside a named wrapper), combined into one head by :func:`~.head.fit_head`;
2. any model: every ``nn.Linear`` and ``nn.Conv2d``, of which the fit keeps those whose outputs
   make the logits (for torchvision models, the last ``nn.Linear``).

Every split is checked on a probe batch through its own encoder; a model whose logits no split
reproduces is refused.

.. autofunction:: line_plugin.adapter.split_model

.. autoclass:: line_plugin.adapter.Split
    :members: route

.. autoclass:: line_plugin.adapter.NoLinearHeadError
"""

from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .encoder import ClassifierInputs
from .head import LinearHead, NoExactHead, candidates, fit_head
from .probe import LayerCall, default_probes, trace

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
    are concatenated and their weights combined. The split is checked on a probe batch.

    The model is put in evaluation mode (distilled timm models return tuples in training mode) and
    is otherwise left as it was: hooks are removed after each pass, and the probe comes from a
    private random generator.

    :param model: a timm or torchvision classifier, or any ``nn.Module`` whose logits come from
        linear layers
    :param probe: a batch the model accepts, used to find and check the split; by default a
        random batch of 4 at the input size the model declares (``pretrained_cfg``, its
        ``img_size``) or, failing that, 224 pixels
    :return: ``Split(encoder, weight, bias)``; ``split.route`` says how the head was found
    :raises ValueError: if the model has no classifier (``num_classes=0``, encoder-only timm
        models), its output is not a :math:`B \\times K` tensor, or it rejects every probe
    :raises NoLinearHeadError: (a ``NotImplementedError`` and a ``ValueError``) if no linear
        head reproduces the logits (VOLO, SqueezeNet)
    """
    name = type(model).__name__
    model.eval()
    _check_has_classifier(model)
    cfg_names = _cfg_classifier_layers(model)
    all_names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    logits, calls, probe = _trace_probe(model, probe, cfg_names + all_names)
    rtol = RTOL.get(logits.dtype, DEFAULT_RTOL)
    outputs = _perturbed_outputs(model, probe, calls, logits, rtol)

    reasons: Dict[str, List[str]] = {}
    routes = [(CFG_ROUTE, cfg_names)] if cfg_names else []
    for route, names in routes + [(GENERIC_ROUTE, all_names)]:
        wanted = set(names)
        try:
            found = candidates([c for c in calls if c.name in wanted], logits.shape[1], rtol)
            head = fit_head(found, *outputs, rtol)
            return _checked_split(model, head, f"{route}: {head.description}", probe, logits, rtol)
        except NoExactHead as err:
            reasons.setdefault(str(err), []).append(route)
    why = " | ".join(f"{' and '.join(labels)}: {err}" for err, labels in reasons.items())
    raise NoLinearHeadError(f"{name}: no linear head reproduces its logits ({why})")


def _perturbed_outputs(
    model: nn.Module, probe: Tensor, calls: List[LayerCall], logits: Tensor, rtol: float
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Logits and candidates' outputs of one more pass, with noise added to those outputs."""
    found = candidates(calls, logits.shape[1], rtol)
    if not found.calls:
        return logits, {}
    generator = torch.Generator().manual_seed(1)
    scale = logits.abs().max()
    noise = {
        call.name: scale * torch.randn(call.output.shape, generator=generator).to(call.output)
        for call in found.calls
    }
    noisy_logits, noisy_calls = trace(model, probe, list(noise), noise)
    return noisy_logits, {call.name: call.output for call in noisy_calls}


def _check_has_classifier(model: nn.Module) -> None:
    name = type(model).__name__
    cfg = _timm_cfg(model)
    if cfg is not None and not hasattr(model, "get_classifier"):
        raise ValueError(
            f"{name} ({cfg.get('architecture', 'timm model')}) is an encoder without a "
            "classifier: there is no weight to split off"
        )
    if getattr(model, "num_classes", None) == 0:
        raise ValueError(
            f"{name} has num_classes=0: it has no classifier to split off; create it with "
            "num_classes > 0"
        )


def _timm_cfg(model: nn.Module) -> Optional[dict]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    return cfg if isinstance(cfg, dict) and "classifier" in cfg else None


def _cfg_classifier_layers(model: nn.Module) -> List[str]:
    """The linear layers named by timm's ``pretrained_cfg['classifier']``, or inside them."""
    cfg = _timm_cfg(model)
    if cfg is None:
        return []
    names = cfg["classifier"]
    layers = []
    for name in [names] if isinstance(names, str) else names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        for sub_name, sub in module.named_modules(prefix=name):
            if isinstance(sub, (nn.Linear, nn.Conv2d)):
                layers.append(sub_name)
    return layers


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
        if not logits.abs().max() > 0:
            raise ValueError(
                f"{name} gave all-zero logits on the probe batch (zero-initialised classifier?): "
                "the split cannot be checked"
            )
        return logits, calls, x
    hint = "the probe given" if probe is not None else "every default probe; pass probe="
    raise ValueError(f"{name} rejected {hint}: " + "; ".join(errors)) from last_error


def _checked_split(
    model: nn.Module, head: LinearHead, route: str, probe: Tensor, logits: Tensor, rtol: float
) -> Split:
    encoder = ClassifierInputs(model, head.layers, route)
    weight, bias = head.weight.float(), head.bias.float()
    with torch.no_grad():
        features = encoder(probe)
    if features.shape[1] != weight.shape[1]:
        raise NoExactHead(f"{features.shape[1]} features for a head of {weight.shape[1]} inputs")
    estimate = features.float() @ weight.T + bias
    scale = logits.abs().max().float()
    error = float((estimate - logits.float()).abs().max() / scale)
    if not error <= rtol:
        raise NoExactHead(f"{route} is off by {error:.2g} (relative) on the probe batch")
    return Split(encoder, weight, bias)
