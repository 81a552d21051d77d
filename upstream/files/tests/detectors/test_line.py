import unittest

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.pytorch_ood.api import ModelNotSetException, RequiresFittingException
from src.pytorch_ood.detector import EnergyBased, LINe, ReAct
from tests.helpers import ClassificationModel


def reference_scores(w, b, z_train, y_train, z, p_a, p_w, clip):
    """
    LINe as the paper and the authors' code compute it, one sample at a time, in float64: the
    class means, C = W * A, and for the predicted class l the activation mask
    C[l] > quantile(C[l], p_a) and the K x D weight mask P > quantile(P, p_w), P = |C[l]| * W
    """
    w, b = w.double().numpy(), b.double().numpy()
    z_train, y_train, z = z_train.double().numpy(), y_train.numpy(), z.double().numpy()
    contrib = w * np.stack([z_train[y_train == c].mean(axis=0) for c in range(len(w))])
    scores = []
    for h in z:
        h = np.minimum(h, clip) if clip is not None else h
        label = np.argmax(w @ h + b)
        keep_a = np.ones(w.shape[1], dtype=bool)
        if p_a > 0:
            keep_a = contrib[label] > np.quantile(contrib[label], p_a)
        products = np.abs(contrib[label])[None, :] * w
        keep_w = np.ones(w.shape, dtype=bool)
        if p_w > 0:
            keep_w = products > np.quantile(products, p_w)
        scores.append(-np.logaddexp.reduce((w * keep_w) @ (h * keep_a) + b))
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

    def _detector(self, **kwargs) -> LINe:
        c = self.model.classifier
        return LINe(self.model.features, c.weight, c.bias, **kwargs)

    def test_shapes(self):
        detector = self._detector().fit_features(self.z, self.y)
        scores = detector(self.x)
        self.assertEqual(scores.shape, (60,))
        self.assertTrue(torch.isfinite(scores).all())
        self.assertEqual(detector.pruned_logits(self.z[:7]).shape, (7, 3))
        self.assertEqual(detector.class_means.dtype, torch.float64)
        self.assertEqual(detector.activation_keep.shape, (3, 32))
        self.assertEqual(detector.weight_threshold.shape, (3, 32))

    def test_reference(self):
        for p_a, p_w, clip in [
            (0.9, 0.9, 0.5),
            (0.5, 0.1, 0.2),
            (0.1, 0.5, None),
            (0.0, 0.9, 1.0),
        ]:
            with self.subTest(p_a=p_a, p_w=p_w, clip=clip):
                detector = self._detector(p_a=p_a, p_w=p_w, clip=clip)
                detector.fit_features(self.z, self.y)
                c = self.model.classifier
                expected = reference_scores(
                    c.weight.detach(), c.bias.detach(), self.z, self.y, self.z, p_a, p_w, clip
                )
                scores = detector.predict_features(self.z.double())
                torch.testing.assert_close(scores, expected, rtol=1e-10, atol=1e-10)

    def test_mask_sizes(self):
        # per class, strictly above the median: half of the 32 neurons and of the 96 weights
        detector = self._detector(p_a=0.5, p_w=0.5).fit_features(self.z, self.y)
        self.assertEqual(detector.activation_keep.sum(dim=1).tolist(), [16, 16, 16])
        w = detector.weight
        kept = [(w > detector.weight_threshold[label]).sum().item() for label in range(3)]
        self.assertEqual(kept, [48, 48, 48])

    def test_fit_loader(self):
        # OOD samples (label < 0) are ignored; labels may be floats of integral value
        x = torch.cat([self.x, torch.randn(size=(10, 10))])
        y = torch.cat([self.y, -torch.ones(10, dtype=torch.long)]).float()
        a = self._detector().fit(DataLoader(TensorDataset(x, y), batch_size=16))
        b = self._detector().fit_features(self.z, self.y)
        torch.testing.assert_close(a.class_means, b.class_means)
        torch.testing.assert_close(a(self.x), b(self.x))

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

    def test_set_hyperparameters(self):
        # new masks from the stored class means: the same as fitting again
        detector = self._detector().fit_features(self.z, self.y)
        detector.predict_features(self.z)
        detector.set_hyperparameters(p_a=0.5, p_w=0.1, clip=None)
        fresh = self._detector(p_a=0.5, p_w=0.1, clip=None).fit_features(self.z, self.y)
        self.assertTrue(torch.equal(detector(self.x), fresh(self.x)))
        self.assertEqual(detector.get_hyperparameters(), {"p_a": 0.5, "p_w": 0.1, "clip": None})

    def test_nan_in_nan_out(self):
        detector = self._detector().fit_features(self.z, self.y)
        z = self.z[:4].clone()
        z[1, 0] = float("nan")
        scores = detector.predict_features(z)
        self.assertTrue(torch.isnan(scores[1]))
        self.assertTrue(torch.isfinite(scores[[0, 2, 3]]).all())

    def test_statistics_stay_on_the_cpu(self):
        detector = self._detector().fit_features(self.z, self.y).to("cpu")
        self.assertEqual(detector.class_means.device.type, "cpu")
        self.assertEqual(detector.predict_features(self.z).dtype, torch.float32)

    @unittest.skipIf(not torch.cuda.is_available(), "CUDA not available")
    def test_cuda(self):
        cpu = self._detector(p_a=0.5, p_w=0.5).fit_features(self.z, self.y)
        cuda = self._detector(p_a=0.5, p_w=0.5).to("cuda").fit_features(self.z, self.y)
        scores = cuda.predict_features(self.z)
        self.assertEqual(scores.device.type, "cuda")
        torch.testing.assert_close(scores.cpu(), cpu.predict_features(self.z))


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

    def test_not_fitted(self):
        with self.assertRaises(RequiresFittingException):
            self.detector.predict_features(self.z)

    def test_no_encoder(self):
        c = self.model.classifier
        detector = LINe(None, c.weight, c.bias).fit_features(self.z, torch.arange(30) % 3)
        with self.assertRaises(ModelNotSetException):
            detector.predict(torch.randn(size=(4, 10)))

    def test_class_without_samples(self):
        with self.assertRaises(ValueError):
            self.detector.fit_features(self.z, torch.zeros(30))

    def test_fractions(self):
        c = self.model.classifier
        for kwargs in ({"p_a": 90}, {"p_w": 1.5}, {"p_a": -0.1}):
            with self.subTest(**kwargs), self.assertRaises(ValueError):
                LINe(None, c.weight, c.bias, **kwargs)
