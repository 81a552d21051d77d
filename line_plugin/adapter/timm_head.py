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

from typing import Callable, List, Tuple

import torch
from torch import Tensor, nn

from .encoder import PreLogits
from .head import module_affine
from .probes import Probe
from .verify import NoExactHead, check, relative_error

ROUTE = "timm forward_head(pre_logits=True)"
NOISE_SEED = 1


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
    noisy_logits, noise, inputs = _noisy_pass(model, probe, name)
    if not torch.equal(inputs, features):
        raise NoExactHead(f"{encoder.route}: the pre-logits are not the input of {name}")
    estimate = features.float() @ weight.float().T + bias.float() + noise.float()
    error = relative_error(estimate, noisy_logits.float())
    if not error <= probe.rtol:
        raise NoExactHead(f"{encoder.route}: the logits are not its output (off by {error:.2g})")
    return encoder, weight, bias


def _noisy_pass(model: nn.Module, probe: Probe, name: str) -> Tuple[Tensor, Tensor, Tensor]:
    """
    The logits with noise added to the classifier's output, that noise, and the classifier's
    input, both flattened per sample.
    """
    seen: List[Tuple[Tensor, Tensor]] = []
    hook = model.get_submodule(name).register_forward_hook(_add_noise(seen, probe))
    try:
        logits = probe.run(model)
    finally:
        hook.remove()
    if len(seen) != 1 or seen[0][1][0].numel() != probe.classes:
        raise NoExactHead(f"{name} does not give the logits once per forward pass")
    inputs, noise = seen[0]
    return logits, noise.flatten(1), inputs.flatten(1)


def _add_noise(seen: List[Tuple[Tensor, Tensor]], probe: Probe) -> Callable:
    generator = torch.Generator().manual_seed(NOISE_SEED)
    scale = probe.logits.abs().max()

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        noise = scale * torch.randn(output.shape, generator=generator).to(output)
        seen.append((args[0], noise))
        return output + noise

    return hook
