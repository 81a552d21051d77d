"""Tests of :mod:`line_plugin.zoo` on the shared checkpoints (real files, no skipping)."""

import pytest
import torch
from torch.utils.data import DataLoader

from line_plugin.data import CIFAR10JPEG, default_models_dir, subset
from line_plugin.zoo import MODELS, DenseNet3, ZooModel, load_checkpoint, load_model

pytestmark = pytest.mark.slow  # reads the shared models and data

# accuracy on a fixed, class-balanced subset of the JPEG test set (n images, seed 0); on the whole
# test set the DenseNets classify 90.64 % and 82.30 % correctly (as the models README says), on
# this subset 90.3 % and 84.4 %
ACCURACY_SUBSET = 1000


def _accuracy(zoo: ZooModel, n: int = ACCURACY_SUBSET) -> float:
    ds = subset(CIFAR10JPEG(split="test", transform=zoo.transform), n, seed=0)
    correct = 0
    with torch.inference_mode():
        for x, y in DataLoader(ds, batch_size=20):  # small batches run fastest on a CPU
            correct += int((zoo.model(x).argmax(1) == y).sum())
    return correct / len(ds)


def test_models_listed():
    assert set(MODELS) == {
        "densenet_bc100",
        "densenet_bc100_dice",
        "resnet18",
        "vit_tiny",
        "convnext_atto",
    }
    for path, description in MODELS.values():
        assert (default_models_dir() / path).is_file(), path
        assert description


def test_timm_models_load():
    x = torch.zeros(2, 3, 32, 32)
    for name in ("resnet18", "vit_tiny", "convnext_atto"):
        zoo = load_model(name)
        assert not zoo.model.training
        assert zoo.spec["input_size"] == 32
        assert all(p.dtype == torch.float32 for p in zoo.model.parameters())
        with torch.no_grad():
            assert zoo.model(x).shape == (2, 10), name


def test_densenet_checkpoints_match_definition():
    for name in ("densenet_bc100", "densenet_bc100_dice"):
        zoo = load_model(name)  # strict load_state_dict
        assert isinstance(zoo.model, DenseNet3)
        assert zoo.spec["arch"] == "densenet_bc100"
        assert tuple(zoo.spec["std"]) == (0.2023, 0.1994, 0.2010)


def test_accuracy_fine_tuned():
    # README: 90.7 % on the whole JPEG test set
    assert abs(_accuracy(load_model("densenet_bc100")) - 0.907) < 0.025


def test_accuracy_dice_original():
    # README: 82.3 % on the whole JPEG test set (trained on lossless CIFAR-10)
    assert abs(_accuracy(load_model("densenet_bc100_dice")) - 0.823) < 0.025


def test_accuracy_resnet18():
    assert abs(_accuracy(load_model("resnet18")) - 0.843) < 0.025


def test_load_checkpoint_plain_state_dict(tmp_path):
    zoo = load_model("convnext_atto")
    half = {k: v.half() if v.is_floating_point() else v for k, v in zoo.model.state_dict().items()}
    path = tmp_path / "plain.pt"
    torch.save({f"module.{k}": v for k, v in half.items()}, path)
    again = load_checkpoint("convnext_atto", path)
    assert again.name == "convnext_atto"
    # no spec: timm's data config gives the normalisation
    assert len(again.spec["mean"]) == 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), zoo.model(x), atol=1e-5, rtol=0)
