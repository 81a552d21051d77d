"""
timm's own head API as a split: ``forward_head(forward_features(x), pre_logits=True)`` as the
features and ``get_classifier()`` as the linear head.

This is what timm teaches, and what most timm models are. It is taken only where it holds: the
classifier must be one ``nn.Linear`` (or a convolution whose weight flattens to one), run once
per forward pass, and the logits must be exactly its output: on the probe, the features times
its weight plus its bias give the logits; on one more pass with known noise added to the
classifier's output, the logits move by that noise; and the features are the classifier's
input in that pass, bit for bit (a BatchNorm between them that is near the identity, as timm
initialises it, would pass the first two checks within the tolerance). Heads where timm's
pre-logits are not the classifier's input (distilled DeiT averages two tokens before ``head``;
EfficientViT-MSRA and SHViT take them before a BatchNorm), or where ``get_classifier()`` is a
tuple or a whole head, fail the checks and are left to the layer routes of :mod:`.split`.
"""

from typing import Tuple

import torch
from torch import Tensor, nn

from .encoder import PreLogits
from .head import module_affine
from .probes import Probe
from .trace import noisy_pass
from .verify import NoExactHead, check, relative_error

ROUTE = "timm forward_head(pre_logits=True)"


def timm_head(model: nn.Module, probe: Probe) -> Tuple[PreLogits, Tensor, Tensor]:
    """
    The split timm's head API gives, checked on the probe and on a noisy pass.

    :param model: the classifier, in evaluation mode
    :param probe: the probe, with random weights in zero-initialised classifiers if any
    :return: the encoder, and the weight :math:`K \\times D` and bias :math:`K` (float64) of
        ``get_classifier()`` with the probe's replacement parameters in place
    :raises NoExactHead: if the model lacks the API, or the split does not give the logits
    """
    if not all(
        callable(getattr(model, attr, None))
        for attr in ("forward_features", "forward_head", "get_classifier")
    ):
        raise NoExactHead("not a timm model: no forward_head and get_classifier")
    classifier = model.get_classifier()
    name = next((n for n, m in model.named_modules() if m is classifier), None)
    if name is None or not isinstance(classifier, (nn.Linear, nn.Conv2d)):
        kind = type(classifier).__name__
        raise NoExactHead(f"get_classifier() gives a {kind}, not one linear layer of the model")
    weight, bias = module_affine(name, classifier, probe.params)
    encoder = PreLogits(model, name, f"{ROUTE}: {name}")
    try:
        features = check(encoder, weight, bias, probe, encoder.route)
    except NoExactHead:
        raise
    except Exception as err:  # a forward_head without pre_logits, features of another shape
        raise NoExactHead(f"{ROUTE} failed: {type(err).__name__}: {err}") from None
    noisy, calls = noisy_pass(model, probe, [name])
    if len(calls) != 1 or calls[0].calls != 1 or calls[0].noise[0].numel() != probe.classes:
        raise NoExactHead(f"{name} does not give the logits once per forward pass")
    inputs = calls[0].input
    if inputs is None or not torch.equal(inputs.flatten(1), features):
        raise NoExactHead(f"{encoder.route}: the pre-logits are not the input of {name}")
    noise = noisy.noise[name].flatten(1)
    estimate = features.float() @ weight.float().T + bias.float() + noise.float()
    error = relative_error(estimate, noisy.noisy_logits.float())
    if not error <= probe.rtol:
        raise NoExactHead(f"{encoder.route}: the logits are not its output (off by {error:.2g})")
    return encoder, weight, bias
