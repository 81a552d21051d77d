"""Tests of :mod:`line_plugin.data` on the shared data (real files, no skipping)."""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import line_plugin
from line_plugin.data import (
    CIFAR10JPEG,
    OOD_SETS,
    OOD_TITLES,
    NpzImages,
    default_data_dir,
    default_models_dir,
    ood_set,
    open_cifar10,
    shared_dir,
)

pytestmark = pytest.mark.slow  # reads the shared models and data


def test_default_dirs_exist():
    assert (default_data_dir() / "cifar10_jpeg" / "test.jpegs.xz").is_file()
    assert (default_models_dir() / "cifar10_jpeg").is_dir()


def test_found_beside_the_repository_from_any_folder():
    beside = Path(line_plugin.__file__).resolve().parents[2] / "shared" / "data"
    with (
        mock.patch.dict("os.environ", {"LINE_OOD_DATA": ""}),
        mock.patch.object(Path, "cwd", return_value=Path("/nonexistent/cwd")),
    ):
        assert default_data_dir() == beside


def test_env_var_wins():
    real = default_data_dir()
    with mock.patch.dict("os.environ", {"LINE_OOD_DATA": str(real)}):
        assert shared_dir("data") == real


def test_test_split():
    ds = CIFAR10JPEG(split="test")
    assert len(ds) == 10000
    assert np.bincount(ds.targets).tolist() == [1000] * 10
    img, label = ds[0]
    assert isinstance(img, Image.Image)
    assert (img.mode, img.size) == ("RGB", (32, 32))
    assert label == 0
    assert ds[9999][1] == 9


def test_train_split():
    ds = CIFAR10JPEG(split="train", transform=T.ToTensor())
    assert len(ds) == 50000
    assert np.bincount(ds.targets).tolist() == [5000] * 10
    x, y = ds[25000]
    assert x.shape == (3, 32, 32)
    assert y == 5
    # images differ from each other and are not blank
    assert float(x.std()) > 0.01
    assert not torch.equal(x, ds[25001][0])


def test_indices():
    full = CIFAR10JPEG(split="test")
    part = CIFAR10JPEG(split="test", indices=[5, 2000, 9999])
    assert len(part) == 3
    assert part.targets == [0, 2, 9]
    assert np.asarray(part[1][0]).tolist() == np.asarray(full[2000][0]).tolist()
    with pytest.raises(IndexError):
        CIFAR10JPEG(split="test", indices=[10000])


def test_bad_split_and_missing_root():
    with pytest.raises(ValueError):
        CIFAR10JPEG(split="val")
    with pytest.raises(FileNotFoundError, match="test.jpegs.xz"):
        CIFAR10JPEG("/nonexistent", split="test")


def test_open_cifar10_finds_pack():
    ds = open_cifar10(default_data_dir() / "cifar10_jpeg", split="test")
    assert isinstance(ds, CIFAR10JPEG)
    assert len(ds) == 10000


def test_sizes_labels_shapes():
    sizes = {"dtd": 1200, "imagenet": 1000, "mnist": 10000, "fashion_mnist": 10000}
    assert set(OOD_SETS) == set(sizes)
    assert set(OOD_TITLES) == set(sizes)
    for name, size in sizes.items():
        ds = ood_set(name, transform=T.ToTensor())
        assert len(ds) == size, name
        x, y = ds[size - 1]
        assert (tuple(x.shape), y) == ((3, 32, 32), -1), name
        assert set(ds.targets) == {-1}


def test_mnist_is_gray_in_three_channels():
    img, _ = NpzImages("mnist")[0]
    arr = np.asarray(img)
    assert arr.shape == (32, 32, 3)
    assert (arr[..., 0] == arr[..., 2]).all()


def test_unknown_and_missing():
    with pytest.raises(KeyError, match="fashion_mnist"):
        ood_set("svhn")
    with pytest.raises(FileNotFoundError):
        NpzImages("/nonexistent/x.npz")
