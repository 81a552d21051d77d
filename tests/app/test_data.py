"""Tests of :mod:`line_plugin.data` without the shared data: locating it, subsets, folders."""

import unittest
from pathlib import Path
from unittest import mock

import numpy as np
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
    shared_dir,
    subset,
)


class TestLocate(unittest.TestCase):
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
