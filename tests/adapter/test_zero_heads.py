"""
Zero-initialised classifiers: split with random weights in their place, never written.

timm zero-initialises the heads of MLP-Mixer, ResMLP, gMixer, gMLP, Sequencer and Hiera: a fresh
model gives all-zero logits, which cannot show which features make them.
"""

import pytest
import timm
import torch
from torch import nn
from toy_classifiers import MLP, AuxMax, K, SharedHeads, TokenHeads, images, reproduces, vectors

from line_plugin.adapter import NoLinearHeadError, split_model
from line_plugin.adapter.zero_heads import random_weights, zero_layers


def zeroed(model: nn.Module, *layers: str, bias: float = 0.0) -> nn.Module:
    with torch.no_grad():
        for layer in layers:
            model.get_submodule(layer).weight.zero_()
            model.get_submodule(layer).bias.fill_(bias)
    return model


def randomised(model: nn.Module, *layers: str) -> nn.Module:
    """The test's own model with random weights written into the layers: training, in short."""
    with torch.no_grad():
        for layer in layers:
            nn.init.normal_(model.get_submodule(layer).weight)
            nn.init.normal_(model.get_submodule(layer).bias)
    return model


def test_zero_layers_found():
    model = zeroed(TokenHeads(), "head_dist")
    assert zero_layers(model, K) == ["head_dist"]
    assert zero_layers(model, K + 1) == []


def test_random_weights_do_not_touch_the_model_or_the_global_generator():
    model = zeroed(MLP(), "fc")
    rng = torch.get_rng_state()
    params = random_weights(model, ["fc"])
    assert set(params) == {"fc.weight", "fc.bias"}
    assert params["fc.weight"].shape == (K, 8) and params["fc.weight"].abs().min() > 0
    assert not model.fc.weight.any()
    assert torch.equal(rng, torch.get_rng_state())


def test_zero_classifier_splits_on_the_features_it_will_see_trained():
    model = zeroed(MLP(), "fc")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    encoder, weight, bias = split = split_model(model)
    assert encoder.layers == ("fc",)
    assert split.route == "linear layers: fc (zero-initialised: checked with random weights)"
    assert torch.equal(weight, torch.zeros(K, 8)) and torch.equal(bias, torch.zeros(K))
    with torch.no_grad():
        assert torch.equal(encoder(vectors()), model.body(vectors()))
    # the model is left as it was: zero weights, no hooks, the global generator untouched
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(rng, torch.get_rng_state())
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks)
    # once trained, the same encoder with the trained head gives the model's logits
    randomised(model, "fc")
    trained = (encoder, model.fc.weight.detach(), model.fc.bias.detach())
    assert reproduces(trained, model, vectors())


def test_zero_weight_with_constant_bias_keeps_the_bias():
    # MLP-Mixer's head_bias=-log(K) option: zero weight, constant bias
    model = zeroed(MLP(), "fc", bias=-1.5)
    _, weight, bias = split_model(model)
    assert torch.equal(weight, torch.zeros(K, 8))
    assert torch.equal(bias, torch.full((K,), -1.5))


def test_zero_token_heads_concatenate_and_halve():
    model = zeroed(TokenHeads(), "head", "head_dist")
    encoder, weight, _ = split = split_model(model)
    assert encoder.layers == ("head", "head_dist")
    assert split.route.startswith("linear layers: 0.5 head + 0.5 head_dist, inputs concatenated")
    assert weight.shape == (K, 16)
    randomised(model, "head", "head_dist")
    trained_weight = torch.cat([model.head.weight, model.head_dist.weight], dim=1).detach() / 2
    trained_bias = (model.head.bias + model.head_dist.bias).detach() / 2
    assert reproduces((encoder, trained_weight, trained_bias), model, vectors())


def test_zero_shared_heads_share_one_input():
    model = zeroed(SharedHeads(), "head", "head_dist")
    split = split_model(model)
    assert split.encoder.layers == ("head",)
    assert "(0.5 head + 0.5 head_dist) on one shared input" in split.route


def test_zero_aux_max_head_stays_refused():
    # VOLO's head is not linear whatever its weights: zero ones must not hide that
    model = zeroed(AuxMax(), "head", "aux_head")
    with pytest.raises(NoLinearHeadError) as caught:
        split_model(model)
    message = str(caught.value)
    assert "zero-initialised head, aux_head" in message
    assert "aux_head gives 3 x 5 values per sample" in message


# timm's zero-initialised heads, as created: a small input where the model takes one
TIMM_ZERO_HEADS = [
    ("gmlp_ti16_224", {"img_size": 32}, None),
    *[
        pytest.param(*case, marks=pytest.mark.slow)
        for case in [
            ("mixer_s32_224", {"img_size": 32}, None),
            ("resmlp_12_224", {"img_size": 32}, None),
            ("gmixer_12_224", {"img_size": 32}, None),
            ("sequencer2d_s", {}, 32),
            ("hiera_tiny_224", {"img_size": 32}, 32),
        ]
    ],
]


@pytest.mark.parametrize("name,kwargs,size", TIMM_ZERO_HEADS)
def test_timm_zero_heads(name, kwargs, size):
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    layers = zero_layers(model, 10)
    assert layers, f"{name} no longer zero-initialises its head: drop it from this list"
    split = split_model(model, None if size is None else images(4, size, seed=0))
    assert split.route.endswith("(zero-initialised: checked with random weights)")
    randomised(model, *layers)
    trained = split_model(model, images(4, size or 32, seed=0))
    assert trained.encoder.layers == split.encoder.layers
    head = (split.encoder, trained.weight, trained.bias)
    assert reproduces(head, model.eval(), images(2, size or 32, seed=3), rtol=1e-4)
