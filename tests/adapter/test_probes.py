"""Default probes: built from the input the model declares before the stem guesses."""

import unittest

import timm
import torch
import torchvision
from timm_zoo import randomise
from toy_classifiers import MLP, K, images, reproduces

from line_plugin.adapter import split_model
from line_plugin.adapter.probes import input_shapes


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


def shapes(name: str, **kwargs) -> list:
    """The probe shapes of a timm model, in order; built on the meta device (no weights)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=K, **kwargs)
    return list(dict.fromkeys(input_shapes(model)))


class TestDeclaredInput(unittest.TestCase):
    def test_tresnet_channels_come_from_the_config_not_the_stem(self):
        # TResNet's first convolution follows a space-to-depth step: 48 input channels
        self.assertEqual(shapes("tresnet_m")[0], (3, 224, 224))

    def test_own_image_size_before_the_config(self):
        self.assertEqual(shapes("vit_tiny_patch16_224", img_size=32)[0], (3, 32, 32))
        # MLP-Mixer keeps its size in the stem, not in a patch_embed
        self.assertEqual(shapes("mixer_s32_224", img_size=64)[0], (3, 64, 64))

    def test_own_channels_before_the_config(self):
        self.assertEqual(shapes("test_resnet", in_chans=1)[0], (1, 160, 160))

    def test_config_size(self):
        self.assertEqual(shapes("inception_v3")[0], (3, 299, 299))

    def test_plain_models(self):
        self.assertEqual(list(input_shapes(MLP()))[0], (12,))
        model = torchvision.models.resnet18(weights=None)
        self.assertEqual(list(input_shapes(model)), [(3, 224, 224)])


def test_tresnet_splits_with_the_default_probe():
    model = timm.create_model("tresnet_m", pretrained=False, num_classes=10)
    split = split_model(model)
    assert split.route == "pretrained_cfg['classifier']: head.fc"
    assert reproduces(split, model, images(2, 224, seed=3), rtol=1e-4)
