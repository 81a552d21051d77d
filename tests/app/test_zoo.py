"""Tests of :mod:`line_plugin.zoo` without the shared checkpoints."""

import numpy as np
import pytest
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


def test_shapes_and_head():
    torch.manual_seed(0)
    model = DenseNet3(100, 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.feature_maps(x)
        z = model.features(x)
        logits = model(x)
    assert maps.shape == (2, 342, 8, 8)
    assert z.shape == (2, 342)
    assert (z >= 0).all()
    assert model.fc.in_features == 342
    torch.testing.assert_close(logits, z @ model.fc.weight.T + model.fc.bias)


def test_bad_depth():
    with pytest.raises(ValueError):
        DenseNet3(depth=99)


def test_unknown_model_lists_known():
    with pytest.raises(KeyError, match="densenet_bc100.*convnext_atto"):
        load_model("resnet50")


def test_missing_dir_and_file():
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        load_model("densenet_bc100", models_dir="/nonexistent")
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        load_checkpoint("resnet18", "/nonexistent/x.pt")


SPEC = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010), "input_size": 32}


def test_cifar_images_only_normalised():
    transform = input_transform(DenseNet3(100, 10), SPEC)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    expected = T.Normalize(SPEC["mean"], SPEC["std"])(T.ToTensor()(img))
    assert torch.equal(transform(img), expected)  # bit for bit


def test_other_sizes_resized_and_center_cropped():
    transform = input_transform(DenseNet3(100, 10), SPEC)
    rng = np.random.default_rng(1)
    for size in [(48, 40), (20, 20), (64, 64)]:
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
        square = T.CenterCrop(32)(T.Resize(32)(img))  # shorter side to 32, bilinear
        expected = T.Normalize(SPEC["mean"], SPEC["std"])(T.ToTensor()(square))
        assert torch.equal(transform(img), expected), size


def test_densenet_split_reproduces_the_logits():
    torch.manual_seed(0)
    net = DenseNet3(100, 10).eval()
    encoder, weight, bias = split_backbone(ZooModel("toy", net, None, {"input_size": 32}))
    torch.testing.assert_close(weight, net.fc.weight.detach())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), net.features(x))
        torch.testing.assert_close(encoder(x) @ weight.T + bias, net(x))


def test_model_without_linear_head_is_refused():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError):
        split_backbone(ZooModel("conv", net.eval(), None, {"input_size": 8}))


def test_checkpoint_spec_wins_over_the_defaults(tmp_path):
    net = DenseNet3(100, 10)
    plain, with_spec = tmp_path / "plain.pt", tmp_path / "with_spec.pt"
    torch.save(net.state_dict(), plain)
    own = {"arch": "densenet_bc100", "mean": (0.5,) * 3, "std": (0.25,) * 3, "input_size": 32}
    torch.save({"state_dict": net.state_dict(), "spec": own}, with_spec)
    with pytest.raises(ValueError, match="plain.pt' names no architecture in its spec; pass arch"):
        load_checkpoint(None, plain)
    defaults = {"arch": "densenet_bc100", **SPEC}
    loaded = load_checkpoint(None, plain, name="mine", defaults=defaults)
    assert (loaded.name, loaded.spec) == ("mine", defaults)
    assert torch.equal(loaded.model.fc.weight, net.fc.weight)
    assert load_checkpoint(None, with_spec, defaults=defaults).spec == own
