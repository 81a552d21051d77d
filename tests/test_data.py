"""Tests of :mod:`line_plugin.data` on the shared data (real files, no skipping)."""

import unittest
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
    CIFAR10JPEG,
    OOD_SETS,
    OOD_TITLES,
    NpzImages,
    default_data_dir,
    default_models_dir,
    image_folder,
    labels_of,
    ood_set,
    open_cifar10,
    shared_dir,
    subset,
)


class TestLocate(unittest.TestCase):
    def test_default_dirs_exist(self):
        self.assertTrue((default_data_dir() / "cifar10_jpeg" / "test.jpegs.xz").is_file())
        self.assertTrue((default_models_dir() / "cifar10_jpeg").is_dir())

    def test_env_var_wins(self):
        real = default_data_dir()
        with mock.patch.dict("os.environ", {"LINE_OOD_DATA": str(real)}):
            self.assertEqual(shared_dir("data"), real)

    def test_env_var_missing_folder(self):
        with mock.patch.dict("os.environ", {"LINE_OOD_MODELS": "/nonexistent/models"}):
            with self.assertRaisesRegex(FileNotFoundError, "LINE_OOD_MODELS.*nonexistent"):
                default_models_dir()

    def test_nothing_found_names_paths_and_env_var(self):
        with (
            mock.patch.dict("os.environ", {"LINE_OOD_DATA": ""}),
            mock.patch.object(data, "_REPO_ROOT", Path("/nonexistent/repo")),
            mock.patch.object(data.Path, "cwd", return_value=Path("/nonexistent/cwd")),
        ):
            with self.assertRaises(FileNotFoundError) as ctx:
                default_data_dir()
        message = str(ctx.exception)
        self.assertIn("/nonexistent/shared/data", message)
        self.assertIn("LINE_OOD_DATA", message)

    def test_bad_kind(self):
        with self.assertRaises(ValueError):
            shared_dir("weights")


@pytest.mark.slow
class TestCIFAR10JPEG(unittest.TestCase):
    def test_test_split(self):
        ds = CIFAR10JPEG(split="test")
        self.assertEqual(len(ds), 10000)
        self.assertEqual(np.bincount(ds.targets).tolist(), [1000] * 10)
        img, label = ds[0]
        self.assertIsInstance(img, Image.Image)
        self.assertEqual((img.mode, img.size), ("RGB", (32, 32)))
        self.assertEqual(label, 0)
        self.assertEqual(ds[9999][1], 9)

    def test_train_split(self):
        ds = CIFAR10JPEG(split="train", transform=T.ToTensor())
        self.assertEqual(len(ds), 50000)
        self.assertEqual(np.bincount(ds.targets).tolist(), [5000] * 10)
        x, y = ds[25000]
        self.assertEqual(x.shape, (3, 32, 32))
        self.assertEqual(y, 5)
        # images differ from each other and are not blank
        self.assertGreater(float(x.std()), 0.01)
        self.assertFalse(torch.equal(x, ds[25001][0]))

    def test_indices(self):
        full = CIFAR10JPEG(split="test")
        part = CIFAR10JPEG(split="test", indices=[5, 2000, 9999])
        self.assertEqual(len(part), 3)
        self.assertEqual(part.targets, [0, 2, 9])
        self.assertEqual(np.asarray(part[1][0]).tolist(), np.asarray(full[2000][0]).tolist())
        with self.assertRaises(IndexError):
            CIFAR10JPEG(split="test", indices=[10000])

    def test_bad_split_and_missing_root(self):
        with self.assertRaises(ValueError):
            CIFAR10JPEG(split="val")
        with self.assertRaisesRegex(FileNotFoundError, "test.jpegs.xz"):
            CIFAR10JPEG("/nonexistent", split="test")

    def test_open_cifar10_finds_pack(self):
        ds = open_cifar10(default_data_dir() / "cifar10_jpeg", split="test")
        self.assertIsInstance(ds, CIFAR10JPEG)
        self.assertEqual(len(ds), 10000)


@pytest.mark.slow
class TestOODSets(unittest.TestCase):
    def test_sizes_labels_shapes(self):
        sizes = {"dtd": 1200, "imagenet": 1000, "mnist": 10000, "fashion_mnist": 10000}
        self.assertEqual(set(OOD_SETS), set(sizes))
        self.assertEqual(set(OOD_TITLES), set(sizes))
        for name, size in sizes.items():
            ds = ood_set(name, transform=T.ToTensor())
            self.assertEqual(len(ds), size, name)
            x, y = ds[size - 1]
            self.assertEqual((tuple(x.shape), y), ((3, 32, 32), -1), name)
            self.assertEqual(set(ds.targets), {-1})

    def test_mnist_is_gray_in_three_channels(self):
        img, _ = NpzImages("mnist")[0]
        arr = np.asarray(img)
        self.assertEqual(arr.shape, (32, 32, 3))
        self.assertTrue((arr[..., 0] == arr[..., 2]).all())

    def test_unknown_and_missing(self):
        with self.assertRaisesRegex(KeyError, "fashion_mnist"):
            ood_set("svhn")
        with self.assertRaises(FileNotFoundError):
            NpzImages("/nonexistent/x.npz")


class TestSubset(unittest.TestCase):
    def setUp(self):
        labels = np.repeat(np.arange(10), 30)  # sorted by class, like the packs

        class Fake(torch.utils.data.Dataset):
            targets = labels.tolist()

            def __len__(self):
                return len(labels)

            def __getitem__(self, i):
                return torch.tensor([float(i)]), int(labels[i])

        self.ds = Fake()
        self.labels = labels

    def test_deterministic(self):
        a = subset(self.ds, 50, seed=3).indices
        self.assertEqual(a, subset(self.ds, 50, seed=3).indices)
        self.assertNotEqual(a, subset(self.ds, 50, seed=4).indices)
        self.assertEqual(a, sorted(a))
        self.assertEqual(len(set(a)), 50)

    def test_balanced(self):
        for n in (10, 50, 57, 299):
            counts = np.bincount(self.labels[subset(self.ds, n, seed=0).indices], minlength=10)
            self.assertEqual(counts.sum(), n)
            self.assertLessEqual(counts.max() - counts.min(), 1, n)

    def test_short_class_and_all(self):
        labels = np.array([0] * 5 + [1] * 50)
        chosen = data.subset_indices(labels, len(labels), 20, seed=0)
        self.assertEqual(np.bincount(labels[chosen]).tolist(), [5, 15])
        self.assertEqual(len(subset(self.ds, 10**6).indices), 300)

    def test_exclude_and_nested_labels(self):
        first = subset(self.ds, 100, seed=0)
        second = subset(self.ds, 100, seed=0, exclude=first.indices)
        self.assertFalse(set(first.indices) & set(second.indices))
        self.assertEqual(labels_of(second).tolist(), self.labels[second.indices].tolist())
        nested = subset(second, 20, seed=1)
        self.assertIsInstance(nested, Subset)
        self.assertEqual(np.bincount(labels_of(nested)).tolist(), [2] * 10)

    def test_unlabelled(self):
        x = np.zeros((30, 32, 32, 3), dtype=np.uint8)
        self.assertIsNone(labels_of(torch.utils.data.TensorDataset(torch.zeros(3))))
        ds = torch.utils.data.TensorDataset(torch.from_numpy(x))
        self.assertEqual(len(subset(ds, 7, seed=0)), 7)


class TestImageFolder(unittest.TestCase):
    def test_image_folder(self):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for split in ("train", "test"):
                for c, name in enumerate(("cat", "dog")):
                    folder = Path(tmp) / split / name
                    folder.mkdir(parents=True)
                    for i in range(3):
                        color = (40 * c, 10 * i, 0)
                        Image.new("RGB", (32, 32), color).save(folder / f"{i}.png")
            ds = open_cifar10(tmp, split="test", transform=T.ToTensor())
            self.assertEqual(len(ds), 6)
            self.assertEqual(ds.targets, [0, 0, 0, 1, 1, 1])
            self.assertEqual(ds[4][0].shape, (3, 32, 32))
            self.assertEqual(len(image_folder(Path(tmp) / "train")), 6)
            with self.assertRaises(FileNotFoundError):
                image_folder(Path(tmp) / "val")
            with self.assertRaises(FileNotFoundError):
                open_cifar10(Path(tmp) / "train" / "cat", split="test")
