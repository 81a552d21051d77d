"""Tests of :mod:`line_plugin.data` without the shared data: locating it, subsets, folders."""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset
from torchvision import transforms as T

from line_plugin import data
from line_plugin.data import (
    default_data_dir,
    default_models_dir,
    image_folder,
    labels_of,
    open_cifar10,
    shared,
    shared_dir,
    subset,
)


def test_env_var_missing_folder():
    with mock.patch.dict("os.environ", {"LINE_OOD_MODELS": "/nonexistent/models"}):
        with pytest.raises(FileNotFoundError, match="LINE_OOD_MODELS.*nonexistent"):
            default_models_dir()


def test_nothing_found_names_paths_and_env_var():
    with (
        mock.patch.dict("os.environ", {"LINE_OOD_DATA": ""}),
        mock.patch.object(shared, "_REPO_ROOT", Path("/nonexistent/repo")),
        mock.patch.object(shared.Path, "cwd", return_value=Path("/nonexistent/cwd")),
    ):
        with pytest.raises(FileNotFoundError) as ctx:
            default_data_dir()
    message = str(ctx.value)
    assert "/nonexistent/shared/data" in message
    assert "LINE_OOD_DATA" in message


def test_bad_kind():
    with pytest.raises(ValueError):
        shared_dir("weights")


@pytest.fixture
def labels():
    return np.repeat(np.arange(10), 30)  # sorted by class, like the packs


@pytest.fixture
def ds(labels):
    class Fake(torch.utils.data.Dataset):
        targets = labels.tolist()

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return torch.tensor([float(i)]), int(labels[i])

    return Fake()


def test_deterministic(ds, labels):
    a = subset(ds, 50, seed=3).indices
    assert a == subset(ds, 50, seed=3).indices
    assert a != subset(ds, 50, seed=4).indices
    assert a == sorted(a)
    assert len(set(a)) == 50


def test_balanced(ds, labels):
    for n in (10, 50, 57, 299):
        counts = np.bincount(labels[subset(ds, n, seed=0).indices], minlength=10)
        assert counts.sum() == n
        assert counts.max() - counts.min() <= 1, n


def test_short_class_and_all(ds):
    short = np.array([0] * 5 + [1] * 50)
    chosen = data.subset_indices(short, len(short), 20, seed=0)
    assert np.bincount(short[chosen]).tolist() == [5, 15]
    assert len(subset(ds, 10**6).indices) == 300


def test_exclude_and_nested_labels(ds, labels):
    first = subset(ds, 100, seed=0)
    second = subset(ds, 100, seed=0, exclude=first.indices)
    assert not set(first.indices) & set(second.indices)
    assert labels_of(second).tolist() == labels[second.indices].tolist()
    nested = subset(second, 20, seed=1)
    assert isinstance(nested, Subset)
    assert np.bincount(labels_of(nested)).tolist() == [2] * 10


def test_unlabelled():
    x = np.zeros((30, 32, 32, 3), dtype=np.uint8)
    assert labels_of(torch.utils.data.TensorDataset(torch.zeros(3))) is None
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x))
    assert len(subset(ds, 7, seed=0)) == 7


def test_image_folder(tmp_path):
    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                color = (40 * c, 10 * i, 0)
                Image.new("RGB", (32, 32), color).save(folder / f"{i}.png")
    ds = open_cifar10(tmp_path, split="test", transform=T.ToTensor())
    assert len(ds) == 6
    assert ds.targets == [0, 0, 0, 1, 1, 1]
    assert ds[4][0].shape == (3, 32, 32)
    assert len(image_folder(tmp_path / "train")) == 6
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "val")
    with pytest.raises(FileNotFoundError):
        open_cifar10(tmp_path / "train" / "cat", split="test")
