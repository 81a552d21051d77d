import unittest

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pytorch_ood.api import ModelNotSetException, RequiresFittingException
from pytorch_ood.detector import EnergyBased, LINe, ReAct


class ClassificationModel(nn.Module):
    """
    A small classifier with ReLU features, as in ``tests.helpers``
    """

    def __init__(self, num_inputs=10, n_hidden=32, num_outputs=3):
        super().__init__()
        self.layer1 = nn.Linear(num_inputs, n_hidden)
        self.classifier = nn.Linear(n_hidden, num_outputs)

    def features(self, x):
        return self.layer1(x).relu()

    def forward(self, x):
        return self.classifier(self.features(x))


def reference_scores(w, b, z_train, y_train, z, p_a, p_w, clip):
    """
    LINe as the paper and the authors' code define it, one sample at a time: the class means,
    the contributions C = W * A, and for the predicted class l the activation mask
    C[l] > quantile(C[l], p_a) and the K x D weight mask P > quantile(P, p_w) with
    P = |C[l]| * W, all in float64 with numpy
    """
    w, b = w.double().numpy(), b.double().numpy()
    z_train, y_train, z = z_train.double().numpy(), y_train.numpy(), z.double().numpy()
    means = np.stack([z_train[y_train == c].mean(axis=0) for c in range(len(w))])
    contrib = w * means
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
        logits = (w * keep_w) @ (h * keep_a) + b
        scores.append(-np.logaddexp.reduce(logits))
    return torch.tensor(scores)


class TestLINe(unittest.TestCase):
    """
    Tests for LINe
    """

    def setUp(self) -> None:
        torch.manual_seed(123)
        self.model = ClassificationModel().eval()
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
        self.assertEqual(detector.predict_features(self.z[:7]).shape, (7,))
        self.assertEqual(detector.pruned_logits(self.z[:7]).shape, (7, 3))
        self.assertEqual(detector.class_means.shape, (3, 32))
        self.assertEqual(detector.class_means.dtype, torch.float64)
        self.assertEqual(detector.activation_keep.shape, (3, 32))
        self.assertEqual(detector.activation_keep.dtype, torch.bool)
        self.assertEqual(detector.weight_threshold.shape, (3, 32))

    def test_float_labels(self):
        # labels as pytorch-ood's tests pass them: floats of integral value
        y = torch.cat([torch.zeros(20), torch.ones(20), 2 * torch.ones(20)])
        a = self._detector().fit_features(self.z, y)
        b = self._detector().fit_features(self.z, y.long())
        self.assertTrue(torch.equal(a.class_means, b.class_means))

    def test_fit_loader(self):
        # OOD samples (label < 0) are ignored; fit and fit_features agree
        x = torch.cat([self.x, torch.randn(size=(10, 10))])
        y = torch.cat([self.y, -torch.ones(10, dtype=torch.long)])
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        a = self._detector().fit(loader)
        b = self._detector().fit_features(self.z, self.y)
        torch.testing.assert_close(a.class_means, b.class_means)
        torch.testing.assert_close(a(self.x), b(self.x))

    def test_reference(self):
        for p_a, p_w, clip in [
            (0.9, 0.9, 1.0),
            (0.5, 0.1, 0.5),
            (0.1, 0.5, None),
            (0.0, 0.9, 2.0),
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
        # per class, strictly above the quantile: half of the 32 neurons, half of the 96 weights
        detector = self._detector(p_a=0.5, p_w=0.5).fit_features(self.z, self.y)
        detector.predict_features(self.z)
        self.assertEqual(detector.activation_keep.sum(dim=1).tolist(), [16, 16, 16])
        w = detector.weight
        kept = [(w > detector.weight_threshold[label]).sum().item() for label in range(3)]
        self.assertEqual(kept, [48, 48, 48])

    def test_energy_equivalence(self):
        # no pruning, no clipping: the energy score
        detector = self._detector(p_a=0.0, p_w=0.0, clip=None).fit_features(self.z, self.y)
        torch.testing.assert_close(detector(self.x), EnergyBased(self.model)(self.x))

    def test_react_equivalence(self):
        # no pruning, the same clip: ReAct with a fixed threshold
        detector = self._detector(p_a=0.0, p_w=0.0, clip=0.3).fit_features(self.z, self.y)
        react = ReAct(self.model.features, self.model.classifier, threshold=0.3)
        torch.testing.assert_close(detector(self.x), react(self.x))

    def test_detector_argument(self):
        detector = self._detector().fit_features(self.z, self.y)
        logits = detector.pruned_logits(self.z)
        torch.testing.assert_close(detector.predict_features(self.z), EnergyBased.score(logits))

        def max_logit(z):
            return -z.max(dim=1).values

        custom = self._detector(detector=max_logit).fit_features(self.z, self.y)
        torch.testing.assert_close(custom.predict_features(self.z), max_logit(logits))

    def test_set_hyperparameters(self):
        # new masks from the stored class means, the same as fitting again
        detector = self._detector().fit_features(self.z, self.y)
        detector.predict_features(self.z)
        detector.set_hyperparameters(p_a=0.5, p_w=0.1, clip=None)
        fresh = self._detector(p_a=0.5, p_w=0.1, clip=None).fit_features(self.z, self.y)
        self.assertTrue(torch.equal(detector(self.x), fresh(self.x)))
        self.assertEqual(detector.get_hyperparameters(), {"p_a": 0.5, "p_w": 0.1, "clip": None})

    def test_hyperparameter_space(self):
        self.assertEqual(set(LINe.hyperparameter_space), {"p_a", "p_w", "clip"})
        for name in ("p_a", "p_w"):
            self.assertTrue(all(0 <= v <= 1 for v in LINe.hyperparameter_space[name]))

    def test_state_dict(self):
        detector = self._detector(p_a=0.5).fit_features(self.z, self.y)
        c = self.model.classifier
        restored = LINe(None, c.weight, c.bias).load_state_dict(detector.state_dict())
        self.assertEqual(restored.p_a, 0.5)
        self.assertTrue(torch.equal(restored.predict_features(self.z), detector(self.x)))

    def test_info(self):
        self.assertEqual(LINe.info.paper.year, 2023)
        self.assertTrue(LINe.info.ai_coded)


class TestLINeErrors(unittest.TestCase):
    """
    Tests fitting and prediction errors of LINe
    """

    def setUp(self) -> None:
        torch.manual_seed(123)
        self.model = ClassificationModel()
        c = self.model.classifier
        self.detector = LINe(self.model.features, c.weight, c.bias)
        self.z = torch.randn(size=(30, 32)).relu()

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

    def test_non_integral_labels(self):
        with self.assertRaises(ValueError):
            self.detector.fit_features(self.z, torch.arange(30) % 3 + 0.5)

    def test_no_id_samples(self):
        with self.assertRaises(ValueError):
            self.detector.fit_features(self.z, -torch.ones(30))

    def test_label_out_of_range(self):
        with self.assertRaises(ValueError):
            self.detector.fit_features(self.z, torch.arange(30) % 4)

    def test_wrong_width(self):
        self.detector.fit_features(self.z, torch.arange(30) % 3)
        with self.assertRaises(ValueError):
            self.detector.predict_features(torch.randn(size=(4, 31)))

    def test_fractions(self):
        c = self.model.classifier
        for kwargs in ({"p_a": 90}, {"p_w": 1.5}, {"p_a": -0.1}):
            with self.subTest(**kwargs), self.assertRaises(ValueError):
                LINe(None, c.weight, c.bias, **kwargs)
        with self.assertRaises(ValueError):
            self.detector.set_hyperparameters(p_w=70)


class TestLINeDevices(unittest.TestCase):
    """
    Tests LINe on the CPU and, where available, on a CUDA device
    """

    def setUp(self) -> None:
        torch.manual_seed(123)
        self.model = ClassificationModel().eval()
        self.z = torch.randn(size=(60, 32)).relu()
        self.y = torch.arange(60) % 3

    def _detector(self) -> LINe:
        c = self.model.classifier
        return LINe(None, c.weight, c.bias, p_a=0.5, p_w=0.5, clip=1.0)

    def test_cpu(self):
        scores = self._detector().fit_features(self.z, self.y).predict_features(self.z)
        self.assertEqual(scores.device.type, "cpu")
        self.assertEqual(scores.dtype, torch.float32)

    @unittest.skipIf(not torch.cuda.is_available(), "CUDA not available")
    def test_cuda(self):
        cpu = self._detector().fit_features(self.z, self.y)
        expected = cpu.predict_features(self.z)
        cuda = self._detector().to("cuda").fit_features(self.z.cuda(), self.y.cuda())
        torch.testing.assert_close(cuda.class_means.cpu(), cpu.class_means)
        scores = cuda.predict_features(self.z)  # moved to the detector's device
        self.assertEqual(scores.device.type, "cuda")
        torch.testing.assert_close(scores.cpu(), expected)
        # a detector fitted on the CPU, moved
        scores = cpu.to("cuda").predict_features(self.z)
        self.assertEqual(scores.device.type, "cuda")
        torch.testing.assert_close(scores.cpu(), expected)
