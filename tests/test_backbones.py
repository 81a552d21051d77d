"""Tests for :mod:`line_plugin.adapter`: exact splits of small models, refusals, side effects."""

import unittest

import pytest
import timm
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from timm_zoo import randomise
from torch import nn

from line_plugin.adapter import (
    ClassifierInputs,
    NoLinearHeadError,
    Split,
    data_config,
    default_transform,
    split_model,
)

K = 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models and inputs: one thread is as fast, and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reproduces(split: Split, model: nn.Module, x: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Whether ``encoder(x) @ W.T + b`` equals ``model(x)`` on a batch the split never saw."""
    encoder, weight, bias = split
    with torch.no_grad():
        logits = model(x)
        estimate = encoder(x).to(weight.dtype) @ weight.T + bias
    return bool((estimate - logits).abs().max() <= rtol * logits.abs().max())


class MLP(nn.Module):
    def __init__(self, bias: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.fc = nn.Linear(8, K, bias=bias)

    def forward(self, x):
        return self.fc(self.body(x))


class ConvHead(nn.Module):
    """A 1x1 convolution classifier on pooled features (DLA, DPN, ResNetV2)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Conv2d(8, K, 1)

    def forward(self, x):
        return self.fc(self.body(x)).flatten(1)


class SharedHeads(nn.Module):
    """Two classifiers on one vector, averaged (EfficientFormer, SwiftFormer)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 8), nn.GELU())
        self.head, self.head_dist = nn.Linear(8, K), nn.Linear(8, K)

    def forward(self, x):
        x = self.body(x)
        return (self.head(x) + self.head_dist(x)) / 2


class TokenHeads(nn.Module):
    """Two classifiers on two different tokens, averaged (distilled DeiT, PiT)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 2 * 8)
        self.head, self.head_dist = nn.Linear(8, K), nn.Linear(8, K)

    def forward(self, x):
        tokens = torch.tanh(self.body(x)).view(-1, 2, 8)
        return (self.head(tokens[:, 0]) + self.head_dist(tokens[:, 1])) / 2


class SoftmaxMix(nn.Module):
    """Per-stage heads mixed by fixed softmax weights (EfficientViM)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.Linear(12, 6), nn.Linear(6, 4)])
        self.heads = nn.ModuleList([nn.Linear(6, K), nn.Linear(4, K)])
        self.weights = nn.Parameter(torch.tensor([0.3, -1.1]))

    def forward(self, x):
        h1 = torch.relu(self.stages[0](x))
        h2 = torch.relu(self.stages[1](h1))
        mix = self.weights.softmax(-1)
        return mix[0] * self.heads[0](h1) + mix[1] * self.heads[1](h2)


class NormHead(nn.Module):
    """BatchNorm then Linear (LeViT, EfficientViT-MSRA)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 8)
        self.head = nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, K))

    def forward(self, x):
        return self.head(self.body(x))


class AuxMax(nn.Module):
    """A class-token head plus the max over tokens of an auxiliary head (VOLO): not linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 4 * 8)
        self.head, self.aux_head = nn.Linear(8, K), nn.Linear(8, K)

    def forward(self, x):
        tokens = self.body(x).view(-1, 4, 8)
        return self.head(tokens[:, 0]) + 0.5 * self.aux_head(tokens[:, 1:]).max(1)[0]


class Squeeze(nn.Module):
    """A convolution classifier followed by ReLU and pooling (SqueezeNet): not linear."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Sequential(nn.Conv2d(3, K, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.classifier(x).flatten(1)


class LogSoftmax(MLP):
    def forward(self, x):
        return super().forward(x).log_softmax(1)


class TwiceHead(MLP):
    """The classifier applied twice, to two vectors: its input is not one feature vector."""

    def forward(self, x):
        h = self.body(x)
        return self.fc(h) + self.fc(h.flip(1))


class TupleOut(MLP):
    def forward(self, x):
        return super().forward(x), x


def vectors(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 12, generator=torch.Generator().manual_seed(seed))


def images(n: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


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


class TestRefusals(unittest.TestCase):
    def assertRefused(self, model, error, *words, probe=None):
        with self.assertRaises(error) as caught:
            split_model(model, probe)
        for word in (type(model).__name__, *words):
            self.assertIn(word, str(caught.exception))

    def test_aux_token_head(self):
        self.assertRefused(AuxMax(), NotImplementedError, "aux_head gives 3 x 5 values per sample")

    def test_squeezenet_like(self):
        self.assertRefused(Squeeze(), NotImplementedError, probe=images())

    def test_nonlinear_output(self):
        self.assertRefused(LogSoftmax(), NotImplementedError, "no fixed mix of fc")

    def test_layer_called_twice(self):
        self.assertRefused(TwiceHead(), NotImplementedError, "fc runs 2 times")

    def test_tuple_output(self):
        self.assertRefused(TupleOut(), ValueError, "not B x K logits")

    def test_zero_classifier(self):
        model = MLP()
        nn.init.zeros_(model.fc.weight)
        nn.init.zeros_(model.fc.bias)
        self.assertRefused(model, ValueError, "all-zero logits")

    def test_rejected_probe(self):
        self.assertRefused(MLP(), ValueError, "rejected the probe given", probe=torch.randn(2, 3))

    def test_timm_num_classes_zero(self):
        model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
        self.assertRefused(model, ValueError, "num_classes=0")

    def test_timm_encoder_without_classifier(self):
        with torch.device("meta"):  # refused before any forward pass: no weights needed
            model = timm.create_model("qwen3_vit_88m_enc", pretrained=False)
        self.assertRefused(model, ValueError, "encoder without a classifier")

    def test_refusal_is_both_not_implemented_and_value_error(self):
        self.assertTrue(issubclass(NoLinearHeadError, NotImplementedError))
        self.assertTrue(issubclass(NoLinearHeadError, ValueError))
        self.assertRefused(LogSoftmax(), NoLinearHeadError)

    def test_timm_volo(self):
        model = timm.create_model("volo_d1_224", pretrained=False, num_classes=K, img_size=32)
        self.assertRefused(model, NotImplementedError, "aux_head", probe=images(4))


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


class TestDefaultProbe(unittest.TestCase):
    def test_timm_model_with_own_image_size(self):
        # pretrained_cfg still says 224: the model's patch_embed.img_size is tried first
        model = timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, num_classes=K, img_size=32, patch_size=4
        )
        randomise(model, num_classes=K)
        split = split_model(model)
        self.assertEqual(split.route, "pretrained_cfg['classifier']: head")
        self.assertTrue(reproduces(split, model, images()))

    def test_timm_one_channel_model(self):
        # pretrained_cfg says 3 channels whatever in_chans was: the stem decides
        model = timm.create_model("test_resnet", pretrained=False, num_classes=K, in_chans=1)
        randomise(model, num_classes=K)
        split = split_model(model)
        self.assertTrue(reproduces(split, model, torch.randn(2, 1, 160, 160)))

    def test_timm_cnn_at_cfg_size(self):
        model = timm.create_model("test_resnet", pretrained=False, num_classes=K)
        randomise(model, num_classes=K)
        self.assertTrue(reproduces(split_model(model), model, images(2, 160)))

    def test_torchvision_at_224(self):
        model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=K)
        randomise(model, num_classes=K)
        split = split_model(model)
        self.assertEqual(split.route, "linear layers: classifier.3")
        self.assertTrue(reproduces(split, model, images(2, 64)))


class TestTransforms(unittest.TestCase):
    def test_timm_config_is_timm_own(self):
        model = timm.create_model("test_vit", pretrained=False, num_classes=K)
        expected = timm.data.resolve_model_data_config(model)
        self.assertEqual(data_config(model), expected)
        self.assertEqual(data_config(model, input_size=(3, 32, 32))["input_size"], (3, 32, 32))

    def test_other_models_get_imagenet_defaults(self):
        config = data_config(MLP())
        self.assertEqual(config["input_size"], (3, 224, 224))
        self.assertEqual(config["interpolation"], "bilinear")
        self.assertEqual(config["mean"], (0.485, 0.456, 0.406))

    def test_transform_gives_normalised_tensor(self):
        from PIL import Image

        model = timm.create_model("test_vit", pretrained=False, num_classes=K)
        transform = default_transform(model, input_size=(3, 32, 32))
        x = transform(Image.new("RGB", (48, 40), (255, 255, 255)))
        self.assertEqual(tuple(x.shape), (3, 32, 32))
        mean, std = data_config(model)["mean"], data_config(model)["std"]
        torch.testing.assert_close(x[:, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))


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


def test_pytorch_ood_detector_takes_the_split():
    from pytorch_ood.detector import DICE

    model = MLP()
    encoder, weight, bias = split_model(model)
    detector = DICE(encoder, weight, bias, p=0.5)
    detector.fit_features(encoder(vectors(20)).detach(), torch.arange(20) % K)
    scores = detector(vectors())
    assert scores.shape == (6,) and torch.isfinite(scores).all()
