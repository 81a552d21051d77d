import copy
import unittest

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.pytorch_ood.api import ModelNotSetException, RequiresFittingException
from src.pytorch_ood.detector import EnergyBased, LINe, ReAct
from tests.helpers import ClassificationModel

SETTINGS = [(0.9, 0.9, 0.5), (0.5, 0.1, 0.2), (0.1, 0.5, None), (0.0, 0.9, 1.0), (1.0, 1.0, None)]


def reference_masks(w, z_train, y_train, p_a, p_w):
    """
    The masks of LINe as the paper and the authors' code derive them, in float64: the class
    means A, C = W * A, and for each class l the activation mask C[l] > quantile(C[l], p_a) and
    the K x D weight mask P > quantile(P, p_w) with P = |C[l]| * W (a fraction of 0: no mask)
    """
    w, z_train, y_train = w.double().numpy(), z_train.double().numpy(), y_train.numpy()
    contrib = w * np.stack([z_train[y_train == c].mean(axis=0) for c in range(len(w))])
    keep = np.ones(contrib.shape, dtype=bool)
    if p_a > 0:
        keep = contrib > np.quantile(contrib, p_a, axis=1, keepdims=True)
    masks = np.ones((len(w),) + w.shape, dtype=bool)
    for label, row in enumerate(np.abs(contrib)):
        if p_w > 0:
            masks[label] = row[None, :] * w > np.quantile(row[None, :] * w, p_w)
    return keep, masks


def reference_scores(w, b, keep, masks, z, clip):
    """the energy of the pruned logits, one sample at a time, in float64"""
    w, b, scores = w.double().numpy(), b.double().numpy(), []
    for h in z.double().numpy():
        h = np.minimum(h, clip) if clip is not None else h
        label = np.argmax(w @ h + b)
        scores.append(-np.logaddexp.reduce((w * masks[label]) @ (h * keep[label]) + b))
    return torch.tensor(scores)


class TestLINe(unittest.TestCase):
    """
    Tests for LINe
    """

    def setUp(self) -> None:
        torch.manual_seed(123)
        self.model = ClassificationModel(n_hidden=32).eval()
        self.x = torch.randn(size=(60, 10))
        self.y = torch.arange(60) % 3
        with torch.no_grad():
            self.z = self.model.features(self.x)

    def _detector(self, model=None, **kwargs) -> LINe:
        model = self.model if model is None else model
        c = model.classifier
        return LINe(model.features, c.weight, c.bias, **kwargs)

    def _reference(self, detector, p_a, p_w, clip):
        """asserts that the detector's masks are the reference's; returns the reference scores"""
        keep, masks = reference_masks(detector.weight, self.z, self.y, p_a, p_w)
        self.assertTrue(np.array_equal(detector.activation_keep.numpy(), keep))
        kept = detector.weight[None] > detector.weight_threshold[:, None, :]
        self.assertTrue(np.array_equal(kept.numpy(), masks))
        return reference_scores(detector.weight, detector.bias, keep, masks, self.z, clip)

    def test_shapes_and_state(self):
        detector = self._detector().fit_features(self.z, self.y)
        scores = detector(self.x)
        self.assertEqual(scores.shape, (60,))
        self.assertTrue(torch.isfinite(scores).all())
        self.assertEqual(detector.pruned_logits(self.z[:7]).shape, (7, 3))
        self.assertEqual(detector.activation_keep.dtype, torch.bool)
        self.assertEqual(detector.activation_keep.shape, (3, 32))
        self.assertEqual(detector.weight_threshold.shape, (3, 32))
        # a fit on float32 features holds float32 state only
        held = [t for t in vars(detector).values() if isinstance(t, torch.Tensor)]
        self.assertEqual({t.dtype for t in held}, {torch.float32, torch.bool})

    def test_float64_path_matches_the_reference(self):
        for p_a, p_w, clip in SETTINGS:
            with self.subTest(p_a=p_a, p_w=p_w, clip=clip):
                detector = self._detector(p_a=p_a, p_w=p_w, clip=clip)
                detector.fit_features(self.z.double(), self.y)
                expected = self._reference(detector, p_a, p_w, clip)
                scores = detector.predict_features(self.z.double())
                torch.testing.assert_close(scores, expected, rtol=1e-10, atol=1e-10)

    def test_float32_path_matches_the_reference(self):
        # fitted on float32 features: the masks of the float64 reference, bit for bit
        for p_a, p_w, clip in SETTINGS:
            with self.subTest(p_a=p_a, p_w=p_w, clip=clip):
                detector = self._detector(p_a=p_a, p_w=p_w, clip=clip)
                detector.fit_features(self.z, self.y)
                expected = self._reference(detector, p_a, p_w, clip)
                scores = detector.predict_features(self.z)
                self.assertEqual(scores.dtype, torch.float32)
                torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-5)

    def test_mask_sizes(self):
        # per class, strictly above the median: half of the 32 neurons and of the 96 weights
        detector = self._detector(p_a=0.5, p_w=0.5).fit_features(self.z, self.y)
        self.assertEqual(detector.activation_keep.sum(dim=1).tolist(), [16, 16, 16])
        w = detector.weight
        kept = [(w > detector.weight_threshold[label]).sum().item() for label in range(3)]
        self.assertEqual(kept, [48, 48, 48])

    def test_fraction_zero_keeps_everything(self):
        # unlike the authors' percentile 0, which prunes the smallest contribution
        detector = self._detector(p_a=0.0, p_w=0.0).fit_features(self.z, self.y)
        self.assertTrue(detector.activation_keep.all())
        self.assertTrue(torch.isneginf(detector.weight_threshold).all())

    def test_fit_loader(self):
        # OOD samples (label < 0) are ignored; labels may be floats of integral value
        x = torch.cat([self.x, torch.randn(size=(10, 10))])
        y = torch.cat([self.y, -torch.ones(10, dtype=torch.long)]).float()
        a = self._detector().fit(DataLoader(TensorDataset(x, y), batch_size=16))
        b = self._detector().fit_features(self.z, self.y)
        self.assertTrue(torch.equal(a.weight_threshold, b.weight_threshold))
        torch.testing.assert_close(a(self.x), b(self.x))

    def test_encoder_outputs_are_flattened(self):
        # B x C x 1 x 1 outputs of the encoder, as extract_features flattens them
        c = self.model.classifier
        detector = LINe(lambda x: self.model.features(x)[:, :, None, None], c.weight, c.bias)
        detector.fit(DataLoader(TensorDataset(self.x, self.y), batch_size=16))
        flat = self._detector().fit_features(self.z, self.y)
        self.assertTrue(torch.equal(detector.weight_threshold, flat.weight_threshold))
        torch.testing.assert_close(detector(self.x), flat(self.x))

    def test_energy_and_react(self):
        detector = self._detector(p_a=0.0, p_w=0.0, clip=None).fit_features(self.z, self.y)
        torch.testing.assert_close(detector(self.x), EnergyBased(self.model)(self.x))
        detector = self._detector(p_a=0.0, p_w=0.0, clip=0.3).fit_features(self.z, self.y)
        react = ReAct(self.model.features, self.model.classifier, threshold=0.3)
        torch.testing.assert_close(detector(self.x), react(self.x))

    def test_detector_argument(self):
        def max_logit(z):
            return -z.max(dim=1).values

        detector = self._detector(detector=max_logit).fit_features(self.z, self.y)
        logits = detector.pruned_logits(self.z)
        torch.testing.assert_close(detector.predict_features(self.z), max_logit(logits))

    def test_hyperparameters(self):
        detector = self._detector().fit_features(self.z, self.y)
        detector.set_hyperparameters(p_a=0.5, p_w=0.1, clip=None)
        self.assertEqual(detector.get_hyperparameters(), {"p_a": 0.5, "p_w": 0.1, "clip": None})
        with self.assertRaises(RequiresFittingException):  # new masks need a new fit
            detector(self.x)
        detector.fit_features(self.z, self.y)
        fresh = self._detector(p_a=0.5, p_w=0.1, clip=None).fit_features(self.z, self.y)
        self.assertTrue(torch.equal(detector(self.x), fresh(self.x)))
        detector.set_hyperparameters(clip=0.2)  # a clip applies at once
        fresh = self._detector(p_a=0.5, p_w=0.1, clip=0.2).fit_features(self.z, self.y)
        self.assertTrue(torch.equal(detector(self.x), fresh(self.x)))

    def test_nan_in_nan_out(self):
        detector = self._detector().fit_features(self.z, self.y)
        z = self.z[:4].clone()
        z[1, 0] = float("nan")
        scores = detector.predict_features(z)
        self.assertTrue(torch.isnan(scores[1]))
        self.assertTrue(torch.isfinite(scores[[0, 2, 3]]).all())

    def test_edge_cases(self):
        for k, d in [(1, 5), (3, 1)]:  # one class, one feature
            with self.subTest(k=k, d=d):
                w, b = torch.randn(k, d), torch.randn(k)
                z, y = torch.rand(12, d), torch.arange(12) % k
                detector = LINe(None, w, b, p_a=0.5, p_w=0.5).fit_features(z, y)
                keep, masks = reference_masks(w, z, y, 0.5, 0.5)
                self.assertTrue(np.array_equal(detector.activation_keep.numpy(), keep))
                expected = reference_scores(w, b, keep, masks, z, 1.0)
                torch.testing.assert_close(detector.predict_features(z.double()), expected)
        # small integer weights, most of them 0: tied products, where the sample's bracket of the
        # quantile can miss and the thresholds are selected among all products
        w = torch.randint(-2, 3, (4, 30)).float() * (torch.rand(4, 30) < 0.3)
        z, y = torch.rand(40, 30), torch.arange(40) % 4
        for p in (0.1, 0.5, 0.9):
            with self.subTest(ties=p):
                detector = LINe(None, w, p_a=p, p_w=p).fit_features(z, y)
                keep, masks = reference_masks(w, z, y, p, p)
                self.assertTrue(np.array_equal(detector.activation_keep.numpy(), keep))
                kept = w[None] > detector.weight_threshold[:, None, :]
                self.assertTrue(np.array_equal(kept.numpy(), masks))
        # everything pruned: the logits are the bias
        detector = self._detector(p_a=1.0, p_w=1.0).fit_features(self.z, self.y)
        bias = self.model.classifier.bias.detach().expand(5, 3)
        torch.testing.assert_close(detector.pruned_logits(self.z[:5]), bias)
        # an empty batch
        self.assertEqual(detector.predict_features(self.z[:0]).shape, (0,))

    def test_separates_outliers_from_a_toy_distribution(self):
        # ID features near their class centre, OOD features without a class pattern
        g = torch.Generator().manual_seed(0)
        centres = torch.rand(6, 40, generator=g) * (torch.rand(6, 40, generator=g) < 0.3) * 4
        w, y = centres / centres.norm(dim=1, keepdim=True), torch.arange(600) % 6
        x = torch.relu(centres[y] + 0.3 * torch.randn(600, 40, generator=g))
        x_in = torch.relu(centres[y[:200]] + 0.3 * torch.randn(200, 40, generator=g))
        x_out = torch.relu(torch.randn(200, 40, generator=g) * 1.2)
        detector = LINe(None, w, p_a=0.5, p_w=0.5, clip=2.0).fit_features(x, y)
        s_in, s_out = detector.predict_features(x_in), detector.predict_features(x_out)
        auroc = (s_out[:, None] > s_in[None, :]).double().mean()  # higher: more OOD
        self.assertGreater(auroc.item(), 0.95)

    def test_to_moves_the_fitted_state(self):
        # the meta device stands for any other device here
        detector = self._detector().fit_features(self.z, self.y).to("meta")
        self.assertEqual(detector.device, torch.device("meta"))
        for name, value in vars(detector).items():
            if isinstance(value, torch.Tensor):
                self.assertEqual(value.device.type, "meta", name)

    @unittest.skipIf(not torch.cuda.is_available(), "CUDA not available")
    def test_cuda(self):
        # each detector with its own model: to() moves the model it is given
        model = copy.deepcopy(self.model)
        cpu = self._detector(p_a=0.5, p_w=0.5).fit_features(self.z, self.y)
        cuda = self._detector(model, p_a=0.5, p_w=0.5).to("cuda").fit_features(self.z, self.y)
        for name, value in vars(cuda).items():
            if isinstance(value, torch.Tensor):
                self.assertEqual(value.device.type, "cuda", name)
        self.assertTrue(torch.equal(cuda.weight_threshold.cpu(), cpu.weight_threshold))
        scores = cuda.predict_features(self.z)  # CPU features, scores on the detector's device
        self.assertEqual(scores.device.type, "cuda")
        torch.testing.assert_close(scores.cpu(), cpu.predict_features(self.z))
        torch.testing.assert_close(cuda(self.x).cpu(), cpu(self.x), rtol=1e-4, atol=1e-4)
        self.assertEqual(next(self.model.parameters()).device.type, "cpu")


class TestLINeErrors(unittest.TestCase):
    """
    Tests fitting and prediction errors of LINe
    """

    def setUp(self) -> None:
        torch.manual_seed(123)
        self.model = ClassificationModel()
        c = self.model.classifier
        self.detector = LINe(self.model.features, c.weight, c.bias)
        self.z = torch.randn(size=(30, 10))
        self.y = torch.arange(30) % 3

    def test_not_fitted(self):
        with self.assertRaises(RequiresFittingException):
            self.detector.predict_features(self.z)

    def test_no_encoder(self):
        c = self.model.classifier
        detector = LINe(None, c.weight, c.bias).fit_features(self.z, self.y)
        with self.assertRaises(ModelNotSetException):
            detector.predict(torch.randn(size=(4, 10)))

    def test_class_without_samples(self):
        with self.assertRaisesRegex(ValueError, r"no training sample of class\(es\) \[1, 2\]"):
            self.detector.fit_features(self.z, torch.zeros(30))

    def test_label_out_of_range(self):
        with self.assertRaisesRegex(ValueError, "label 3 is out of range for 3 classes"):
            self.detector.fit_features(self.z, torch.arange(30) % 4)

    def test_features_of_another_width(self):
        with self.assertRaisesRegex(ValueError, "width 9, but w has 10 columns"):
            self.detector.fit_features(self.z[:, :9], self.y)

    def test_nan_features_in_fit(self):
        z = self.z.clone()
        z[4, 2] = float("nan")  # a sample of class 1
        with self.assertRaisesRegex(ValueError, r"class\(es\) \[1\] contain NaN"):
            self.detector.fit_features(z, self.y)

    def test_fractions(self):
        c = self.model.classifier
        for kwargs in ({"p_a": 90}, {"p_w": 1.5}, {"p_a": -0.1}):
            with self.subTest(**kwargs), self.assertRaises(ValueError):
                LINe(None, c.weight, c.bias, **kwargs)
