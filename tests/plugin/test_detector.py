"""
The plugin layer's conveniences: presets, ``clip_quantile``, state files with metadata, the
warning on signed features, and ``from_model``.
"""

import tempfile
import unittest

import numpy as np
import torch
from synthetic import synthetic

from line_plugin import PRESETS, LINe
from line_plugin.core import LINe as CoreLINe
from line_plugin.plugin import read_state


class TestConveniences(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic()
        self.test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(2)))

    def test_clip_quantile(self):
        det = LINe(None, self.w, self.b, clip=None, clip_quantile=0.9)
        det.fit_features(self.x, self.y)
        self.assertAlmostEqual(det.clip, float(np.quantile(self.x.numpy(), 0.9)), places=6)
        det.clip_quantile = 0.5
        self.assertAlmostEqual(det.clip, float(np.quantile(self.x.numpy(), 0.5)), places=6)
        det.clip = 2.0  # an absolute clip replaces the quantile
        self.assertIsNone(det.clip_quantile)

    def test_shape_properties(self):
        det = LINe(None, self.w, self.b)
        self.assertEqual((det.num_classes, det.num_features), tuple(self.w.shape))

    def test_presets(self):
        self.assertEqual(PRESETS["cifar10"], {"p_w": 0.9, "p_a": 0.9, "clip": 1.0})
        self.assertEqual(PRESETS["cifar100"], {"p_w": 0.9, "p_a": 0.1, "clip": 1.0})
        self.assertEqual(PRESETS["imagenet"], {"p_w": 0.1, "p_a": 0.1, "clip": 0.8})
        det = LINe.from_preset("imagenet", None, self.w, self.b)
        self.assertEqual(det.get_hyperparameters(), {"p_a": 0.1, "p_w": 0.1, "clip": 0.8})
        with self.assertRaisesRegex(ValueError, "unknown preset"):
            LINe.from_preset("svhn", None, self.w, self.b)


class TestFiles(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic()
        self.test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(5)))
        self.det = LINe(None, self.w, self.b, p_a=0.3, p_w=0.6, clip=1.5)
        self.det.fit_features(self.x, self.y)

    def test_file_round_trip(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/line.pt"
            self.det.save(path)
            other = LINe(None, self.w, self.b).load(path)
        self.assertTrue(
            torch.equal(other.predict_features(self.test), self.det.predict_features(self.test))
        )

    def test_metadata_and_atomic_write(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/line.pt"
            self.det.save(path, backbone="resnet18", classes=["a", "b"], threshold=0.5)
            self.det.save(path, backbone="resnet50")  # replaced whole, no temporary left
            state, metadata = read_state(path)
            self.assertEqual(metadata, {"backbone": "resnet50"})
            self.assertEqual(
                sorted(p.name for p in __import__("pathlib").Path(tmp).iterdir()), ["line.pt"]
            )
        core = CoreLINe(None, self.w, self.b).load_state_dict(state)
        self.assertTrue(
            torch.equal(core.predict_features(self.test), self.det.predict_features(self.test))
        )

    def test_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            LINe(None, self.w, self.b).load("/nonexistent/line.pt")


class TestSignedFeatures(unittest.TestCase):
    def test_warns_on_signed_features_with_masks(self):
        x, y, w, b = synthetic()
        with self.assertLogs("line_plugin.plugin.detector", level="WARNING") as logs:
            LINe(None, w, b, p_a=0.9, p_w=0.9).fit_features(x - x.mean(), y)
        self.assertIn("% of the training activations are negative", logs.output[0])

    def test_no_warning_for_post_relu_features_or_without_masks(self):
        x, y, w, b = synthetic()
        with self.assertNoLogs("line_plugin.plugin.detector", level="WARNING"):
            LINe(None, w, b, p_a=0.9, p_w=0.9).fit_features(x, y)
            LINe(None, w, b, p_a=0, p_w=0, clip=None).fit_features(x - x.mean(), y)
