"""
The core detector (the upstream module) against an independent per-sample float64 reference, its
special cases (Energy, ReAct), hyperparameter changes, pytorch-ood's conventions (labels, the
``detector`` argument, NaN in and NaN out, devices), on synthetic tensors.
"""

import unittest

import numpy as np
import torch
from pytorch_ood.detector import ReAct
from pytorch_ood.detector.energy import EnergyBased
from reference import reference_line_scores
from synthetic import problem
from torch.utils.data import DataLoader, TensorDataset

from line_plugin.core import LINe


def problem_of(num_classes, num_features, seed):
    """the problem of tests/synthetic.py, of another size"""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_classes, num_features, generator=g)
    b = torch.randn(num_classes, generator=g)
    y = torch.arange(400) % num_classes
    centers = torch.rand(num_classes, num_features, generator=g) * 2
    x = torch.relu(centers[y] + torch.randn(400, num_features, generator=g))
    return x, y, w, b


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
        self.x, self.y, self.w, self.b = problem(0, n=400)
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
        self.x, self.y, self.w, self.b = problem_of(5, 9, seed=3)
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
        self.x, self.y, self.w, self.b = problem(0, n=400)
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


class TestConventions(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = problem(0, n=400)
        self.test = torch.relu(torch.randn(30, 13, generator=torch.Generator().manual_seed(7)))

    def test_integral_float_labels_are_labels(self):
        # pytorch-ood's own tests pass float labels such as torch.zeros(n)
        y = self.y.clone()
        y[:20] = -1  # OOD samples are ignored, float or not
        ints = LINe(None, self.w, self.b).fit_features(self.x, y)
        floats = LINe(None, self.w, self.b).fit_features(self.x, y.float())
        self.assertTrue(torch.equal(ints.class_means, floats.class_means))
        self.assertTrue(torch.equal(ints.class_counts, floats.class_counts))

    def test_detector_scores_the_pruned_logits(self):
        det = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5, detector=lambda z: -z.max(dim=1).values)
        det.fit_features(self.x, self.y)
        z = det.pruned_logits(self.test)
        self.assertTrue(torch.equal(det.predict_features(self.test), -z.max(dim=1).values))
        energy = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5).fit_features(self.x, self.y)
        self.assertTrue(torch.equal(energy.pruned_logits(self.test), z))
        self.assertTrue(torch.equal(energy.predict_features(self.test), EnergyBased.score(z)))


class TestUpstreamConventions(unittest.TestCase):
    def setUp(self):
        self.x, self.y, self.w, self.b = problem(0, n=400)
        self.det = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5).fit_features(self.x, self.y)

    def test_nan_in_nan_out(self):
        # as its pytorch-ood neighbours: no check (and no device sync) per batch
        x = torch.relu(torch.randn(6, 13, generator=torch.Generator().manual_seed(3)))
        x[2, 4] = float("nan")
        scores = self.det.predict_features(x)
        self.assertTrue(torch.isnan(scores[2]))
        self.assertTrue(torch.isfinite(scores[[0, 1, 3, 4, 5]]).all())
        torch.testing.assert_close(scores[[0, 1]], self.det.predict_features(x[[0, 1]]))

    def test_statistics_stay_float64_on_the_cpu_and_scoring_casts(self):
        self.det.to("cpu")
        self.assertEqual(self.det.device, torch.device("cpu"))
        self.det.predict_features(self.x[:5])
        for name in ("weight", "bias", "class_means", "weight_threshold"):
            self.assertEqual(getattr(self.det, name).dtype, torch.float64, name)
        held = [t for t in vars(self.det).values() if isinstance(t, torch.Tensor)]
        self.assertTrue(all(t.device.type == "cpu" for t in held))
        casts = self.det._derived[4]  # what scoring float32 features used
        self.assertEqual(list(casts), [(torch.float32, torch.device("cpu"))])
        self.assertTrue(all(t.dtype in (torch.float32, torch.bool) for t in casts[list(casts)[0]]))

    def test_assigned_class_means_restore_a_fitted_detector(self):
        other = LINe(None, self.w, self.b, p_a=0.5, p_w=0.5)
        other.class_means = self.det.class_means.clone()
        other.class_counts = self.det.class_counts.clone()
        self.assertTrue(torch.equal(other.weight_threshold, self.det.weight_threshold))
        self.assertTrue(
            torch.equal(other.predict_features(self.x), self.det.predict_features(self.x))
        )

    def test_small_hyperparameter_space(self):
        sizes = [len(values) for values in LINe.hyperparameter_space.values()]
        self.assertLessEqual(int(np.prod(sizes)), 8)  # DICE and ReAct: at most 8 candidates

    def test_class_without_sample(self):
        y = self.y.clone()
        y[y == 2] = 1
        with self.assertRaisesRegex(ValueError, "class"):
            LINe(None, self.w, self.b).fit_features(self.x, y)

    def test_not_fitted(self):
        from pytorch_ood.api import RequiresFittingException

        with self.assertRaises(RequiresFittingException):
            LINe(None, self.w, self.b).predict_features(self.x)
