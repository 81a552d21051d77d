"""The input pipeline of a model: timm's data config and eval transform."""

import timm
import torch
from PIL import Image
from toy_classifiers import MLP, K

from line_plugin.adapter import data_config, default_transform


def test_timm_config_is_timm_own():
    model = timm.create_model("test_vit", pretrained=False, num_classes=K)
    assert data_config(model) == timm.data.resolve_model_data_config(model)
    assert data_config(model, input_size=(3, 32, 32))["input_size"] == (3, 32, 32)


def test_other_models_get_imagenet_defaults():
    config = data_config(MLP())
    assert config["input_size"] == (3, 224, 224)
    assert config["interpolation"] == "bilinear"
    assert config["mean"] == (0.485, 0.456, 0.406)


def test_transform_gives_normalised_tensor():
    model = timm.create_model("test_vit", pretrained=False, num_classes=K)
    transform = default_transform(model, input_size=(3, 32, 32))
    x = transform(Image.new("RGB", (48, 40), (255, 255, 255)))
    assert tuple(x.shape) == (3, 32, 32)
    mean, std = data_config(model)["mean"], data_config(model)["std"]
    # one float32 subtraction and division per pixel
    torch.testing.assert_close(x[:, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))
