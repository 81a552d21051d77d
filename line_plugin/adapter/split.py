"""
:func:`split_model`: a classifier as penultimate features plus one exact linear head.

Routes, in order (the first that reproduces the logits wins):

1. timm models: timm's own head API, ``forward_head(forward_features(x), pre_logits=True)`` as
   the features and ``get_classifier()`` as the head (:mod:`.timm_head`), where the logits are
   exactly that classifier's output;
2. timm models: the layer(s) named by ``pretrained_cfg['classifier']`` (or the linear layers
   inside a named wrapper), combined into one head by :func:`~.head.fit_mix`;
3. any model: every ``nn.Linear`` and ``nn.Conv2d``, of which the fit keeps those whose outputs
   make the logits (for torchvision models, the last ``nn.Linear``).

Routes 2 and 3 share one traced pass over the probe and one pass with noise added to the
candidate layers (:class:`~.probes.Probe` carries the probe through them). On either, an
``nn.Linear`` applied to every token counts where one token's output (or the mean over tokens) is
the logits: CLIP's attention pooling (timm's ``resnet*_clip``) projects every token and keeps the
first, so the features are the first token's input (:mod:`.tokens`).

Every split is checked on a probe batch through its own encoder; a model whose logits no split
reproduces is refused. A zero-initialised classifier is split and checked with random weights in
its place (:mod:`.zero_heads`), never written into the model.

.. autofunction:: line_plugin.adapter.split_model

.. autoclass:: line_plugin.adapter.Split
    :members: route

.. autoclass:: line_plugin.adapter.NoLinearHeadError
"""

from typing import Dict, List, NamedTuple, Optional, Union

from torch import Tensor, nn

from .encoder import ClassifierInputs, PreLogits
from .head import Candidates, assemble, candidates, fit_mix, module_affine
from .probes import Probe, find_probe
from .timm_config import classifier_layers, is_encoder_only, timm_cfg
from .timm_head import timm_head
from .trace import noisy_pass, trace
from .verify import NoExactHead, check

CFG_ROUTE = "pretrained_cfg['classifier']"
GENERIC_ROUTE = "linear layers"
ZERO_NOTE = " (zero-initialised: checked with random weights)"


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

    encoder: Union[PreLogits, ClassifierInputs]
    weight: Tensor
    bias: Tensor

    @property
    def route(self) -> str:
        """How the head was found, e.g. ``"pretrained_cfg['classifier']: head"``."""
        return self.encoder.route


def split_model(model: nn.Module, probe: Optional[Tensor] = None) -> Split:
    """
    Split a classifier into an encoder of penultimate features and one exact linear head.

    The features are the input(s) of the final linear layer(s): for timm models whose logits are
    exactly ``get_classifier()``'s output, timm's own pre-logits (:class:`PreLogits`); else
    captured by hooks while the model runs (:class:`ClassifierInputs`). Where several layers make
    the logits (distilled or multi-branch models), their inputs are concatenated and their
    weights combined. A final linear layer applied to every token, of which one token's output is
    the logits (CLIP attention pooling), gives that token's input (and one whose mean over tokens
    is the logits, the mean of its inputs). The split is checked on a probe batch.

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
    own = find_probe(model, probe)
    trial = own.with_zero_heads(model)
    if not trial.params and not own.logits.abs().max() > 0:
        raise ValueError(
            f"{name} gave all-zero logits on the probe batch, and none of its layers with "
            f"{own.classes} outputs is zero: the split cannot be checked"
        )
    try:
        encoder, weight, bias = timm_head(model, trial)
    except NoExactHead:
        return _layer_split(model, trial, own)
    if trial.params:
        weight, bias = module_affine(encoder.layers[0], model.get_classifier())
        encoder.route += ZERO_NOTE
        check(encoder, weight, bias, own, encoder.route)
    return Split(encoder, weight.float(), bias.float())


def _layer_split(model: nn.Module, probe: Probe, own: Probe) -> Split:
    """
    The first layer route that gives the logits: the layers named by ``pretrained_cfg``, then
    every linear layer; traced once on the probe and once on a noisy pass.
    """
    name = type(model).__name__
    cfg_names = classifier_layers(model)
    all_names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    calls = trace(model, probe, list(dict.fromkeys(cfg_names + all_names)))[1]
    found = candidates(calls, probe)
    if found.calls:
        probe = noisy_pass(model, probe, [call.name for call in found.calls])[0]
    zeros = ", ".join(probe.zero_layers)
    with_random = f"with random weights in the zero-initialised {zeros}: " * bool(zeros)
    reasons: Dict[str, List[str]] = {}
    routes = [(CFG_ROUTE, cfg_names)] if cfg_names else []
    for route, names in routes + [(GENERIC_ROUTE, all_names)]:
        wanted = set(names)
        try:
            found = candidates([c for c in calls if c.name in wanted], probe)
            coefs = fit_mix(found, probe)
            head = assemble(found, coefs)
            label = f"{route}: {head.description}"
            encoder = ClassifierInputs(model, head.layers, label, head.tokens)
            check(encoder, head.weight, head.bias, probe, label)
            if probe.params:
                affine = {c.name: module_affine(c.name, c.module) for c in found.calls}
                head = assemble(Candidates(found.calls, affine, [], found.tokens), coefs)
                encoder.route = label = label + ZERO_NOTE
                check(encoder, head.weight, head.bias, own, label)
            return Split(encoder, head.weight.float(), head.bias.float())
        except NoExactHead as err:
            reasons.setdefault(with_random + str(err), []).append(route)
    why = " | ".join(f"{' and '.join(labels)}: {err}" for err, labels in reasons.items())
    raise NoLinearHeadError(f"{name}: no linear head reproduces its logits ({why})")


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
