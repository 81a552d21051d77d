"""Tests of :mod:`line_plugin.zoo` without the shared checkpoints."""

import unittest

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from line_plugin.zoo import (
    DenseNet3,
    ZooModel,
    input_transform,
    load_checkpoint,
    load_model,
    split_backbone,
)


class TestDenseNet3(unittest.TestCase):
    def test_shapes_and_head(self):
        torch.manual_seed(0)
        model = DenseNet3(100, 10).eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            maps = model.feature_maps(x)
            z = model.features(x)
            logits = model(x)
        self.assertEqual(maps.shape, (2, 342, 8, 8))
        self.assertEqual(z.shape, (2, 342))
        self.assertTrue((z >= 0).all())
        self.assertEqual(model.fc.in_features, 342)
        torch.testing.assert_close(logits, z @ model.fc.weight.T + model.fc.bias)

    def test_bad_depth(self):
        with self.assertRaises(ValueError):
            DenseNet3(depth=99)


class TestErrors(unittest.TestCase):
    def test_unknown_model_lists_known(self):
        with self.assertRaisesRegex(KeyError, "densenet_bc100.*convnext_atto"):
            load_model("resnet50")

    def test_missing_dir_and_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "nonexistent"):
            load_model("densenet_bc100", models_dir="/nonexistent")
        with self.assertRaisesRegex(FileNotFoundError, "nonexistent"):
            load_checkpoint("resnet18", "/nonexistent/x.pt")


class TestInputTransform(unittest.TestCase):
    spec = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010), "input_size": 32}

    def test_cifar_images_only_normalised(self):
        transform = input_transform(DenseNet3(100, 10), self.spec)
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
        expected = T.Normalize(self.spec["mean"], self.spec["std"])(T.ToTensor()(img))
        self.assertTrue(torch.equal(transform(img), expected))  # bit for bit

    def test_other_sizes_resized_and_center_cropped(self):
        transform = input_transform(DenseNet3(100, 10), self.spec)
        rng = np.random.default_rng(1)
        for size in [(48, 40), (20, 20), (64, 64)]:
            img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
            square = T.CenterCrop(32)(T.Resize(32)(img))  # shorter side to 32, bilinear
            expected = T.Normalize(self.spec["mean"], self.spec["std"])(T.ToTensor()(square))
            self.assertTrue(torch.equal(transform(img), expected), size)


class TestSplitBackbone(unittest.TestCase):
    def test_densenet_split_reproduces_the_logits(self):
        torch.manual_seed(0)
        net = DenseNet3(100, 10).eval()
        encoder, weight, bias = split_backbone(ZooModel("toy", net, None, {"input_size": 32}))
        torch.testing.assert_close(weight, net.fc.weight.detach())
        x = torch.randn(3, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(encoder(x), net.features(x))
            torch.testing.assert_close(encoder(x) @ weight.T + bias, net(x))

    def test_model_without_linear_head_is_refused(self):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
        with self.assertRaises(ValueError):
            split_backbone(ZooModel("conv", net.eval(), None, {"input_size": 8}))
