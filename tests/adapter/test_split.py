"""Exact splits of small classifiers: which layers, which weights, and the model left as it was."""

import unittest

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


class TestExactSplits(unittest.TestCase):
    def test_plain_mlp_uses_last_linear(self):
        model = MLP()
        encoder, weight, bias = split = split_model(model)
        self.assertTrue(torch.equal(weight, model.fc.weight))
        self.assertTrue(torch.equal(bias, model.fc.bias))
        self.assertEqual(encoder.layers, ("fc",))
        self.assertEqual(split.route, "linear layers: fc")
        with torch.no_grad():
            self.assertTrue(torch.equal(encoder(vectors()), model.body(vectors())))
        self.assertTrue(reproduces(split, model, vectors()))

    def test_missing_bias_is_zeros(self):
        _, weight, bias = split_model(MLP(bias=False))
        self.assertTrue(torch.equal(bias, torch.zeros(K)))
        self.assertEqual(weight.shape, (K, 8))

    def test_conv_head(self):
        model = ConvHead()
        split = split_model(model, images())
        self.assertTrue(torch.equal(split.weight, model.fc.weight.flatten(1)))
        self.assertEqual(split.encoder(images()).shape, (3, 8))
        self.assertTrue(reproduces(split, model, images(seed=2)))

    def test_shared_input_heads_average_weights(self):
        model = SharedHeads()
        encoder, weight, bias = split = split_model(model)
        expected = (model.head.weight + model.head_dist.weight) / 2
        torch.testing.assert_close(weight, expected, rtol=0, atol=1e-7)
        self.assertEqual(encoder.layers, ("head",))
        self.assertIn("on one shared input", split.route)
        self.assertTrue(reproduces(split, model, vectors()))

    def test_token_heads_concatenate_inputs(self):
        model = TokenHeads()
        encoder, weight, bias = split = split_model(model)
        halves = torch.cat([model.head.weight, model.head_dist.weight], dim=1) / 2
        torch.testing.assert_close(weight, halves, rtol=0, atol=1e-7)
        self.assertEqual(encoder.layers, ("head", "head_dist"))
        self.assertEqual(encoder(vectors()).shape, (6, 16))
        self.assertTrue(reproduces(split, model, vectors()))

    def test_softmax_mix_is_recovered(self):
        model = SoftmaxMix()
        _, weight, _ = split = split_model(model)
        mix = model.weights.detach().softmax(-1)
        torch.testing.assert_close(weight[:, :6], mix[0] * model.heads[0].weight.detach())
        torch.testing.assert_close(weight[:, 6:], mix[1] * model.heads[1].weight.detach())
        self.assertTrue(reproduces(split, model, vectors()))

    def test_batchnorm_linear_head_uses_post_norm_features(self):
        model = NormHead()
        randomise(model, num_classes=K)
        encoder, weight, _ = split = split_model(model)
        self.assertEqual(encoder.layers, ("head.1",))
        self.assertTrue(torch.equal(weight, model.head[1].weight))
        self.assertTrue(reproduces(split, model, vectors()))

    def test_scaled_logits_fold_the_scale(self):
        class Tempered(MLP):
            def forward(self, x):
                return super().forward(x) / 3

        model = Tempered()
        split = split_model(model)
        torch.testing.assert_close(split.weight, model.fc.weight.detach() / 3)
        self.assertTrue(reproduces(split, model, vectors()))

    @settings(max_examples=20, deadline=None)
    @given(
        widths=st.lists(st.integers(1, 24), min_size=1, max_size=3),
        classes=st.integers(1, 12),
        bias=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def test_any_mlp(self, widths, classes, bias, seed):
        torch.manual_seed(seed)
        layers, width = [], 7
        for w in widths:
            layers += [nn.Linear(width, w), nn.Tanh()]
            width = w
        model = nn.Sequential(*layers, nn.Linear(width, classes, bias=bias))
        probe = torch.randn(8, 7)
        encoder, weight, bias_ = split = split_model(model, probe)
        self.assertTrue(torch.equal(weight, model[-1].weight))
        self.assertEqual(encoder(probe).shape, (8, width))
        self.assertTrue(reproduces(split, model, torch.randn(5, 7), rtol=1e-4))


class TestSideEffects(unittest.TestCase):
    def test_model_left_as_it_was_but_eval(self):
        model = TokenHeads().train()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        rng = torch.get_rng_state()
        encoder, _, _ = split_model(model)
        encoder(vectors())
        self.assertFalse(model.training)
        self.assertTrue(torch.equal(rng, torch.get_rng_state()))
        for module in model.modules():
            self.assertFalse(module._forward_hooks or module._forward_pre_hooks)
        for key, value in model.state_dict().items():
            self.assertTrue(torch.equal(value, before[key]))
        self.assertTrue(all(p.requires_grad for p in model.parameters()))

    def test_weight_and_bias_are_detached_float32_copies(self):
        model = MLP()
        _, weight, bias = split_model(model)
        for tensor in (weight, bias):
            self.assertEqual(tensor.dtype, torch.float32)
            self.assertFalse(tensor.requires_grad)
        weight.zero_()
        self.assertTrue(model.fc.weight.abs().sum() > 0)

    def test_double_model(self):
        model = MLP().double()
        split = split_model(model)
        self.assertEqual(split.weight.dtype, torch.float32)
        self.assertTrue(reproduces(split, model, vectors().double()))

    def test_encoder_is_a_module_that_moves_the_model(self):
        model = MLP()
        encoder = split_model(model).encoder
        self.assertIsInstance(encoder, ClassifierInputs)
        self.assertIs(encoder.model, model)
        encoder.to(torch.float64)
        self.assertEqual(model.fc.weight.dtype, torch.float64)

    def test_encoder_refuses_training_mode(self):
        model = MLP()
        encoder = split_model(model).encoder
        model.train()
        with self.assertRaises(RuntimeError) as caught:
            encoder(vectors())
        self.assertIn("model.eval()", str(caught.exception))

    def test_encoder_keeps_gradients(self):
        model = MLP()
        encoder = split_model(model).encoder
        x = vectors().requires_grad_()
        encoder(x).sum().backward()
        self.assertIsNotNone(x.grad)


TORCHVISION = [
    ("resnet18", {}, "fc"),
    ("densenet121", {}, "classifier"),
    ("mobilenet_v2", {}, "classifier.1"),
    ("mobilenet_v3_small", {}, "classifier.3"),
    ("efficientnet_b0", {}, "classifier.1"),
    ("regnet_y_400mf", {}, "fc"),
    ("convnext_tiny", {}, "classifier.2"),
    ("vit_b_16", {"image_size": 32}, "heads.head"),
    ("swin_t", {}, "head"),
]


@pytest.mark.parametrize("name,kwargs,layer", TORCHVISION)
def test_torchvision(name, kwargs, layer):
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs)
    randomise(model)
    split = split_model(model, images(4, seed=0))
    assert split.route == f"linear layers: {layer}"
    assert reproduces(split, model, images(3, seed=1), rtol=1e-4)


def test_torchvision_squeezenet_refused():
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    with pytest.raises(NotImplementedError, match="SqueezeNet: no linear head"):
        split_model(model, images(2, 64))


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
