"""Tests of :mod:`line_plugin.data` on the shared data (real files, no skipping)."""

import unittest
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

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


@pytest.mark.slow
class TestSharedFolders(unittest.TestCase):
    def test_default_dirs_exist(self):
        self.assertTrue((default_data_dir() / "cifar10_jpeg" / "test.jpegs.xz").is_file())
        self.assertTrue((default_models_dir() / "cifar10_jpeg").is_dir())

    def test_env_var_wins(self):
        real = default_data_dir()
        with mock.patch.dict("os.environ", {"LINE_OOD_DATA": str(real)}):
            self.assertEqual(shared_dir("data"), real)


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
