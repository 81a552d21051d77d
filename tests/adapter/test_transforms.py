"""The input pipeline of a model: timm's data config and eval transform."""

import unittest

import timm
import torch
from toy_classifiers import MLP, K

from line_plugin.adapter import data_config, default_transform


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
