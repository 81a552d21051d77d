"""
Every bad input gets a clear error naming the problem (section 3 of the core issue).
"""

import math
import unittest

import torch
from pytorch_ood.api import ModelNotSetException, RequiresFittingException
from torch.utils.data import DataLoader, TensorDataset

from line_plugin import LINe


def head(num_classes=4, num_features=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(num_classes, num_features, generator=g), torch.randn(
        num_classes, generator=g
    )


def data(n=40, num_classes=4, num_features=6):
    x = torch.rand(n, num_features, generator=torch.Generator().manual_seed(1))
    return x, torch.arange(n) % num_classes


class TestErrors(unittest.TestCase):
    def setUp(self):
        self.w, self.b = head()
        self.x, self.y = data()

    def fitted(self):
        return LINe(None, self.w, self.b).fit_features(self.x, self.y)

    def test_predict_before_fit(self):
        with self.assertRaises(RequiresFittingException):
            LINe(None, self.w, self.b).predict_features(self.x)
        with self.assertRaises(RequiresFittingException):
            LINe(torch.nn.Identity(), self.w, self.b).predict(self.x)

    def test_predict_without_encoder(self):
        with self.assertRaises(ModelNotSetException):
            self.fitted().predict(self.x)

    def test_fit_without_encoder(self):
        loader = DataLoader(TensorDataset(self.x, self.y), batch_size=8)
        with self.assertRaises(ModelNotSetException):
            LINe(None, self.w, self.b).fit(loader)

    def test_fractions_outside_unit_interval(self):
        for name in ("p_a", "p_w", "clip_quantile"):
            for value in (-0.1, 1.5, 90, math.nan, "0.5"):
                with self.subTest(name=name, value=value):
                    with self.assertRaisesRegex(ValueError, name):
                        LINe(None, self.w, self.b, **{name: value})
        with self.assertRaisesRegex(ValueError, "use 0.9 instead of 90"):
            LINe(None, self.w, self.b, p_w=90)
        det = self.fitted()
        with self.assertRaisesRegex(ValueError, "p_a"):
            det.set_hyperparameters(p_a=2.0)
        with self.assertRaisesRegex(ValueError, "p_w"):
            det.p_w = -1

    def test_bad_clip(self):
        for value in (0, -1.0, math.inf, math.nan, "1"):
            with self.subTest(value=value):
                with self.assertRaisesRegex(ValueError, "clip"):
                    LINe(None, self.w, self.b, clip=value)

    def test_unknown_hyperparameter(self):
        with self.assertRaisesRegex(ValueError, "Unknown hyperparameter 'p'"):
            self.fitted().set_hyperparameters(p=0.5)

    def test_non_finite_features(self):
        for bad in (math.nan, math.inf, -math.inf):
            x = self.x.clone()
            x[3, 2] = bad
            with self.subTest(bad=bad):
                with self.assertRaisesRegex(ValueError, "NaN or infinite"):
                    LINe(None, self.w, self.b).fit_features(x, self.y)
                with self.assertRaisesRegex(ValueError, "NaN or infinite"):
                    self.fitted().predict_features(x)

    def test_wrong_width(self):
        with self.assertRaisesRegex(ValueError, "width 5.*expects 6"):
            LINe(None, self.w, self.b).fit_features(self.x[:, :5], self.y)
        with self.assertRaisesRegex(ValueError, "width 7.*expects 6"):
            self.fitted().predict_features(torch.rand(3, 7))
        with self.assertRaisesRegex(ValueError, "shape B x D"):
            self.fitted().predict_features(torch.rand(3, 6, 1))

    def test_labels_out_of_range(self):
        y = self.y.clone()
        y[0] = 4
        with self.assertRaisesRegex(ValueError, "label 4 is out of range.*4 classes"):
            LINe(None, self.w, self.b).fit_features(self.x, y)

    def test_bad_labels(self):
        for bad in (self.y.float() + 0.5, torch.full((40,), math.nan)):
            with self.assertRaisesRegex(ValueError, "labels must be integers"):
                LINe(None, self.w, self.b).fit_features(self.x, bad)
        with self.assertRaisesRegex(ValueError, "labels must be integers"):
            LINe(None, self.w, self.b).fit_features(self.x, self.y > 0)
        with self.assertRaisesRegex(ValueError, "labels must have shape"):
            LINe(None, self.w, self.b).fit_features(self.x, self.y[:-1])

    def test_class_without_sample(self):
        y = self.y.clone()
        y[y == 2] = 1
        with self.assertRaisesRegex(ValueError, r"no training sample for class\(es\) 2"):
            LINe(None, self.w, self.b).fit_features(self.x, y)

    def test_no_in_distribution_sample(self):
        with self.assertRaisesRegex(ValueError, "no in-distribution sample"):
            LINe(None, self.w, self.b).fit_features(self.x, -torch.ones(40, dtype=torch.long))
        loader = DataLoader(TensorDataset(self.x, -torch.ones(40, dtype=torch.long)), batch_size=8)
        with self.assertRaisesRegex(ValueError, "no in-distribution sample"):
            LINe(torch.nn.Identity(), self.w, self.b).fit(loader, progress=False)

    def test_bad_head(self):
        with self.assertRaisesRegex(ValueError, "w must be a non-empty K x D"):
            LINe(None, torch.randn(6), self.b)
        with self.assertRaisesRegex(ValueError, r"b must have shape K = \(4,\)"):
            LINe(None, self.w, torch.randn(3))
        w = self.w.clone()
        w[0, 0] = math.nan
        with self.assertRaisesRegex(ValueError, "w contains NaN"):
            LINe(None, w, self.b)

    def test_clip_quantile_must_give_a_positive_clip(self):
        x = -self.x  # all activations negative
        with self.assertRaisesRegex(ValueError, "not a positive clipping threshold"):
            LINe(None, self.w, self.b, clip_quantile=0.5).fit_features(x, self.y)

    def test_load_garbage(self):
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".pt") as f:
            f.write(b"not a state")
            f.flush()
            with self.assertRaisesRegex(ValueError, "not a saved LINe state"):
                LINe(None, self.w, self.b).load(f.name)
        with self.assertRaisesRegex(ValueError, "not a LINe state"):
            LINe(None, self.w, self.b).load_state_dict({"weight": self.w})
