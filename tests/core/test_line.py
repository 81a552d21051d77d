"""
The core detector (the upstream module) against an independent per-sample float64 reference, its
special cases (Energy, ReAct), hyperparameter changes, state round trips, and pytorch-ood's
conventions (labels, the ``detector`` argument), on synthetic tensors.
"""

import unittest

import numpy as np
import torch
from pytorch_ood.api import RequiresFittingException
from pytorch_ood.detector import ReAct
from pytorch_ood.detector.energy import EnergyBased
from reference import reference_line_scores
from synthetic import synthetic
from torch.utils.data import DataLoader, TensorDataset

from line_plugin.core import LINe

SETTINGS = [
    (0.9, 0.9, 1.0),  # the CIFAR-10 preset
    (0.1, 0.9, 1.0),  # CIFAR-100
    (0.1, 0.1, 0.8),  # ImageNet
    (0.5, 0.0, None),
    (0.0, 0.5, 2.0),
    (0.0, 0.0, None),  # everything off
    (0.3, 0.7, None),
    (1.0, 1.0, 1.0),  # everything pruned: the logits are the bias
]


class TestAgainstReference(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic()
        self.test = torch.relu(torch.randn(50, 13, generator=torch.Generator().manual_seed(1)))

    def expected(self, p_a, p_w, clip):
        return reference_line_scores(
            self.x.numpy(), self.y.numpy(), self.w.numpy(), self.b.numpy(), self.test.numpy(),
            p_a, p_w, clip,
        )  # fmt: skip

    def test_float64_matches_reference(self):
        for p_a, p_w, clip in SETTINGS:
            with self.subTest(p_a=p_a, p_w=p_w, clip=clip):
                det = LINe(None, self.w, self.b, p_a=p_a, p_w=p_w, clip=clip)
                det.fit_features(self.x, self.y)
                scores = det.predict_features(self.test.double()).numpy()
                np.testing.assert_allclose(scores, self.expected(p_a, p_w, clip), rtol=1e-12)

    def test_float32_matches_reference(self):
        for p_a, p_w, clip in SETTINGS:
            with self.subTest(p_a=p_a, p_w=p_w, clip=clip):
                det = LINe(None, self.w, self.b, p_a=p_a, p_w=p_w, clip=clip)
                det.fit_features(self.x, self.y)
                scores = det.predict_features(self.test)
                self.assertEqual(scores.dtype, torch.float32)
                np.testing.assert_allclose(
                    scores.numpy(), self.expected(p_a, p_w, clip), rtol=1e-5, atol=1e-5
                )

    def test_half_precision_features_are_scored_in_float32(self):
        det = LINe(None, self.w, self.b).fit_features(self.x, self.y)
        for dtype in (torch.float16, torch.bfloat16):
            with self.subTest(dtype=dtype):
                low = self.test.to(dtype)
                scores = det.predict_features(low)
                self.assertEqual(scores.dtype, torch.float32)
                torch.testing.assert_close(scores, det.predict_features(low.float()))

    def test_pruning_changes_the_score(self):
        # guards against a detector that ignores its masks
        plain = LINe(None, self.w, self.b, p_a=0, p_w=0, clip=None).fit_features(self.x, self.y)
        pruned = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5, clip=None)
        pruned.fit_features(self.x, self.y)
        diff = plain.predict_features(self.test) - pruned.predict_features(self.test)
        self.assertGreater(diff.abs().min().item(), 1e-3)

    def test_ignores_ood_labels(self):
        y = self.y.clone()
        x = torch.cat([self.x, 100 * torch.ones(5, 13)])
        y = torch.cat([y, -torch.ones(5, dtype=torch.long)])
        a = LINe(None, self.w, self.b).fit_features(x, y)
        b = LINe(None, self.w, self.b).fit_features(self.x, self.y)
        torch.testing.assert_close(a.class_means, b.class_means)


class TestSpecialCases(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic(num_classes=5, num_features=9, seed=3)
        self.test = torch.relu(torch.randn(40, 9, generator=torch.Generator().manual_seed(4)) * 3)

    def test_all_off_is_energy(self):
        det = LINe(None, self.w, self.b, p_a=0, p_w=0, clip=None).fit_features(self.x, self.y)
        logits = self.test @ self.w.T + self.b
        torch.testing.assert_close(det.predict_features(self.test), EnergyBased.score(logits))

    def test_clip_only_is_react(self):
        clip = 0.7
        det = LINe(None, self.w, self.b, p_a=0, p_w=0, clip=clip).fit_features(self.x, self.y)
        react = ReAct(
            backbone=lambda x: x,
            head=lambda f: f.flatten(1) @ self.w.T + self.b,
            threshold=clip,
        )
        expected = react.predict_feature_maps(self.test[:, :, None, None])
        torch.testing.assert_close(det.predict_features(self.test), expected)
        # the clip matters on these features
        unclipped = LINe(None, self.w, self.b, p_a=0, p_w=0, clip=None)
        unclipped.fit_features(self.x, self.y)
        self.assertFalse(torch.allclose(unclipped.predict_features(self.test), expected))

    def test_fraction_zero_keeps_the_minimum(self):
        # the literal rule "> 0-quantile" would drop the smallest contribution
        det = LINe(None, self.w, self.b, p_a=0, p_w=0, clip=None).fit_features(self.x, self.y)
        self.assertTrue(det.activation_keep.all())
        self.assertTrue(torch.isneginf(det.weight_threshold).all())

    def test_mask_fractions(self):
        det = LINe(None, self.w, self.b, p_a=0.5, p_w=0.9, clip=None).fit_features(self.x, self.y)
        kept_neurons = det.activation_keep.sum(dim=1)
        self.assertTrue((kept_neurons == 4).all(), kept_neurons)  # 9 neurons, > median
        kept = (self.w[None] > det.weight_threshold[:, None, :].float()).sum(dim=(1, 2))
        self.assertTrue((kept == 5).all(), kept)  # 45 weights: > the 0.9-quantile (at 39.6): 5


class TestFitAndHyperparameters(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic()
        self.test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(2)))

    def test_fit_loader_equals_fit_features(self):
        encoder = torch.nn.Identity()
        loader = DataLoader(TensorDataset(self.x, self.y), batch_size=32)
        a = LINe(encoder, self.w, self.b).fit(loader)
        b = LINe(None, self.w, self.b).fit_features(self.x, self.y)
        torch.testing.assert_close(a.class_means, b.class_means, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(a.predict_features(self.test), b.predict_features(self.test))
        torch.testing.assert_close(a.predict(self.test), b.predict_features(self.test))

    def test_changes_after_fit_equal_a_fresh_fit(self):
        changes = [{"p_a": 0.2}, {"p_w": 0.3}, {"clip": 0.5}, {"p_a": 0.0, "p_w": 0.0}]
        for change in changes:
            with self.subTest(**change):
                moved = LINe(None, self.w, self.b, p_a=0.9, p_w=0.9, clip=1.0)
                moved.fit_features(self.x, self.y)
                moved.predict_features(self.test)  # derive the first masks
                moved.set_hyperparameters(**change)
                params = {"p_a": 0.9, "p_w": 0.9, "clip": 1.0, **change}
                fresh = LINe(None, self.w, self.b, **params).fit_features(self.x, self.y)
                torch.testing.assert_close(
                    moved.predict_features(self.test), fresh.predict_features(self.test)
                )

    def test_attribute_assignment_rederives(self):
        det = LINe(None, self.w, self.b, p_w=0.9).fit_features(self.x, self.y)
        before = det.predict_features(self.test)
        det.p_w = 0.2
        fresh = LINe(None, self.w, self.b, p_w=0.2).fit_features(self.x, self.y)
        torch.testing.assert_close(
            det.predict_features(self.test), fresh.predict_features(self.test)
        )
        self.assertFalse(torch.allclose(before, det.predict_features(self.test)))


class TestState(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic()
        self.test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(5)))
        self.det = LINe(None, self.w, self.b, p_a=0.3, p_w=0.6, clip=1.5)
        self.det.fit_features(self.x, self.y)

    def test_round_trip_is_exact(self):
        other = LINe(None, self.w, self.b).load_state_dict(self.det.state_dict())
        self.assertEqual(other.get_hyperparameters(), self.det.get_hyperparameters())
        for name in ("class_means", "class_counts", "activation_keep", "weight_threshold"):
            self.assertTrue(torch.equal(getattr(other, name), getattr(self.det, name)), name)
        self.assertTrue(
            torch.equal(other.predict_features(self.test), self.det.predict_features(self.test))
        )

    def test_other_shapes_are_refused(self):
        other = LINe(None, torch.randn(7, 12), torch.randn(7))
        with self.assertRaisesRegex(ValueError, "shape"):
            other.load_state_dict(self.det.state_dict())

    def test_other_weights_are_refused(self):
        other = LINe(None, self.w + 1, self.b)
        with self.assertRaisesRegex(ValueError, "another final layer"):
            other.load_state_dict(self.det.state_dict())

    def test_state_before_fit(self):
        with self.assertRaises(RequiresFittingException):
            LINe(None, self.w, self.b).state_dict()


class TestConventions(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = synthetic()
        self.test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(7)))

    def test_integral_float_labels_are_labels(self):
        # pytorch-ood's own tests pass float labels such as torch.zeros(n)
        y = self.y.clone()
        y[:20] = -1  # OOD samples are ignored, float or not
        ints = LINe(None, self.w, self.b).fit_features(self.x, y)
        floats = LINe(None, self.w, self.b).fit_features(self.x, y.float())
        self.assertTrue(torch.equal(ints.class_means, floats.class_means))
        self.assertTrue(torch.equal(ints.class_counts, floats.class_counts))
        with self.assertRaisesRegex(ValueError, "labels must be integers"):
            LINe(None, self.w, self.b).fit_features(self.x, y.float() + 0.25)

    def test_detector_scores_the_pruned_logits(self):
        det = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5, detector=lambda z: -z.max(dim=1).values)
        det.fit_features(self.x, self.y)
        z = det.pruned_logits(self.test)
        self.assertTrue(torch.equal(det.predict_features(self.test), -z.max(dim=1).values))
        energy = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5).fit_features(self.x, self.y)
        self.assertTrue(torch.equal(energy.pruned_logits(self.test), z))
        self.assertTrue(torch.equal(energy.predict_features(self.test), EnergyBased.score(z)))
