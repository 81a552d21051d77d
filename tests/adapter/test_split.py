"""Exact splits of small classifiers: which layers, which weights, and the model left as it was."""

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from timm_zoo import randomise
from torch import nn
from toy_classifiers import (
    MLP,
    ConvHead,
    K,
    NormHead,
    SharedHeads,
    SoftmaxMix,
    TokenHeads,
    images,
    reproduces,
    vectors,
)

from line_plugin.adapter import ClassifierInputs, split_model


def test_plain_mlp_uses_last_linear():
    model = MLP()
    encoder, weight, bias = split = split_model(model)
    assert torch.equal(weight, model.fc.weight) and torch.equal(bias, model.fc.bias)
    assert encoder.layers == ("fc",)
    assert split.route == "linear layers: fc"
    with torch.no_grad():
        assert torch.equal(encoder(vectors()), model.body(vectors()))
    assert reproduces(split, model, vectors())


def test_missing_bias_is_zeros():
    _, weight, bias = split_model(MLP(bias=False))
    assert torch.equal(bias, torch.zeros(K))
    assert weight.shape == (K, 8)


def test_conv_head():
    model = ConvHead()
    split = split_model(model, images())
    assert torch.equal(split.weight, model.fc.weight.flatten(1))
    assert split.encoder(images()).shape == (3, 8)
    assert reproduces(split, model, images(seed=2))


def test_shared_input_heads_average_weights():
    model = SharedHeads()
    encoder, weight, bias = split = split_model(model)
    expected = (model.head.weight + model.head_dist.weight) / 2
    # the fitted mix 1/2 is snapped exactly; the sum of two float64 weights, rounded to float32
    torch.testing.assert_close(weight, expected, rtol=0, atol=1e-7)
    assert encoder.layers == ("head",)
    assert "on one shared input" in split.route
    assert reproduces(split, model, vectors())


def test_token_heads_concatenate_inputs():
    model = TokenHeads()
    encoder, weight, bias = split = split_model(model)
    halves = torch.cat([model.head.weight, model.head_dist.weight], dim=1) / 2
    torch.testing.assert_close(weight, halves, rtol=0, atol=1e-7)
    assert encoder.layers == ("head", "head_dist")
    assert encoder(vectors()).shape == (6, 16)
    assert reproduces(split, model, vectors())


def test_softmax_mix_is_recovered():
    model = SoftmaxMix()
    _, weight, _ = split = split_model(model)
    mix = model.weights.detach().softmax(-1)
    torch.testing.assert_close(weight[:, :6], mix[0] * model.heads[0].weight.detach())
    torch.testing.assert_close(weight[:, 6:], mix[1] * model.heads[1].weight.detach())
    assert reproduces(split, model, vectors())


def test_batchnorm_linear_head_uses_post_norm_features():
    model = NormHead()
    randomise(model, num_classes=K)
    encoder, weight, _ = split = split_model(model)
    assert encoder.layers == ("head.1",)
    assert torch.equal(weight, model.head[1].weight)
    assert reproduces(split, model, vectors())


def test_scaled_logits_fold_the_scale():
    class Tempered(MLP):
        def forward(self, x):
            return super().forward(x) / 3

    model = Tempered()
    split = split_model(model)
    torch.testing.assert_close(split.weight, model.fc.weight.detach() / 3)
    assert reproduces(split, model, vectors())


@settings(max_examples=20, deadline=None)
@given(
    widths=st.lists(st.integers(1, 24), min_size=1, max_size=3),
    classes=st.integers(1, 12),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_mlp(widths, classes, bias, seed):
    torch.manual_seed(seed)
    layers, width = [], 7
    for w in widths:
        layers += [nn.Linear(width, w), nn.Tanh()]
        width = w
    model = nn.Sequential(*layers, nn.Linear(width, classes, bias=bias))
    probe = torch.randn(8, 7)
    encoder, weight, _ = split = split_model(model, probe)
    assert torch.equal(weight, model[-1].weight)
    assert encoder(probe).shape == (8, width)
    assert reproduces(split, model, torch.randn(5, 7), rtol=1e-4)


def test_model_left_as_it_was_but_eval():
    model = TokenHeads().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    encoder, _, _ = split_model(model)
    encoder(vectors())
    assert not model.training
    assert torch.equal(rng, torch.get_rng_state())
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in model.parameters())


def test_weight_and_bias_are_detached_float32_copies():
    model = MLP()
    _, weight, bias = split_model(model)
    for tensor in (weight, bias):
        assert tensor.dtype == torch.float32 and not tensor.requires_grad
    weight.zero_()
    assert model.fc.weight.abs().sum() > 0


def test_double_model():
    model = MLP().double()
    split = split_model(model)
    assert split.weight.dtype == torch.float32
    assert reproduces(split, model, vectors().double())


def test_encoder_is_a_module_that_moves_the_model():
    model = MLP()
    encoder = split_model(model).encoder
    assert isinstance(encoder, ClassifierInputs)
    assert encoder.model is model
    encoder.to(torch.float64)
    assert model.fc.weight.dtype == torch.float64


def test_encoder_refuses_training_mode():
    model = MLP()
    encoder = split_model(model).encoder
    model.train()
    with pytest.raises(RuntimeError, match=r"model\.eval\(\)"):
        encoder(vectors())


def test_encoder_keeps_gradients():
    model = MLP()
    encoder = split_model(model).encoder
    x = vectors().requires_grad_()
    encoder(x).sum().backward()
    assert x.grad is not None


def slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


TORCHVISION = [
    ("resnet18", {}, "fc"),
    ("mobilenet_v2", {}, "classifier.1"),
    slow("densenet121", {}, "classifier"),
    slow("mobilenet_v3_small", {}, "classifier.3"),
    slow("efficientnet_b0", {}, "classifier.1"),
    slow("regnet_y_400mf", {}, "fc"),
    slow("convnext_tiny", {}, "classifier.2"),
    slow("vit_b_16", {"image_size": 32}, "heads.head"),
    slow("swin_t", {}, "head"),
]


@pytest.mark.parametrize("name,kwargs,layer", TORCHVISION)
def test_torchvision(name, kwargs, layer):
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs)
    randomise(model)
    split = split_model(model, images(4, seed=0))
    assert split.route == f"linear layers: {layer}"
    assert reproduces(split, model, images(3, seed=1), rtol=1e-4)


def test_pytorch_ood_detectors_take_the_split():
    from pytorch_ood.detector import DICE, EnergyBased

    model = MLP()
    encoder, weight, bias = split_model(model)
    train, x = vectors(20), vectors(6, seed=2)
    labels = torch.arange(20) % K
    # DICE on the split is DICE on the hand-made one: the model's body, fc.weight and fc.bias
    by_split = DICE(encoder, weight, bias, p=0.5).fit_features(encoder(train).detach(), labels)
    by_hand = DICE(model.body, model.fc.weight.detach(), model.fc.bias.detach(), p=0.5)
    by_hand.fit_features(model.body(train).detach(), labels)
    assert torch.equal(by_split.predict(x), by_hand.predict(x))
    # and the energy of the split's logits is the energy of the model's own
    split_logits = EnergyBased(lambda v: encoder(v) @ weight.T + bias)
    torch.testing.assert_close(split_logits.predict(x), EnergyBased(model).predict(x))
