"""
Every bad input gets a clear error naming the problem (section 3 of the core issue).
"""

import math

import pytest
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


@pytest.fixture
def w():
    return head()[0]


@pytest.fixture
def b():
    return head()[1]


@pytest.fixture
def x():
    return data()[0]


@pytest.fixture
def y():
    return data()[1]


def fitted(w, b, x, y):
    return LINe(None, w, b).fit_features(x, y)


def test_predict_before_fit(w, b, x):
    with pytest.raises(RequiresFittingException):
        LINe(None, w, b).predict_features(x)
    with pytest.raises(RequiresFittingException):
        LINe(torch.nn.Identity(), w, b).predict(x)


def test_predict_without_encoder(w, b, x, y):
    with pytest.raises(ModelNotSetException):
        fitted(w, b, x, y).predict(x)


def test_fit_without_encoder(w, b, x, y):
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.raises(ModelNotSetException):
        LINe(None, w, b).fit(loader)


@pytest.mark.parametrize("name", ["p_a", "p_w", "clip_quantile"])
@pytest.mark.parametrize("value", [-0.1, 1.5, 90, math.nan, "0.5"])
def test_fractions_outside_unit_interval(w, b, name, value):
    with pytest.raises(ValueError, match=name):
        LINe(None, w, b, **{name: value})


def test_fraction_errors_name_the_fix_and_the_hyperparameter(w, b, x, y):
    with pytest.raises(ValueError, match="use 0.9 instead of 90"):
        LINe(None, w, b, p_w=90)
    det = fitted(w, b, x, y)
    with pytest.raises(ValueError, match="p_a"):
        det.set_hyperparameters(p_a=2.0)
    with pytest.raises(ValueError, match="p_w"):
        det.p_w = -1


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, "1"])
def test_bad_clip(w, b, value):
    with pytest.raises(ValueError, match="clip"):
        LINe(None, w, b, clip=value)


def test_unknown_hyperparameter(w, b, x, y):
    with pytest.raises(ValueError, match="Unknown hyperparameter 'p'"):
        fitted(w, b, x, y).set_hyperparameters(p=0.5)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_features(w, b, x, y, bad):
    x_bad = x.clone()
    x_bad[3, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        LINe(None, w, b).fit_features(x_bad, y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted(w, b, x, y).predict_features(x_bad)


def test_wrong_width(w, b, x, y):
    with pytest.raises(ValueError, match="width 5.*expects 6"):
        LINe(None, w, b).fit_features(x[:, :5], y)
    with pytest.raises(ValueError, match="width 7.*expects 6"):
        fitted(w, b, x, y).predict_features(torch.rand(3, 7))
    with pytest.raises(ValueError, match="shape B x D"):
        fitted(w, b, x, y).predict_features(torch.rand(3, 6, 1))


def test_labels_out_of_range(w, b, x, y):
    y = y.clone()
    y[0] = 4
    with pytest.raises(ValueError, match="label 4 is out of range.*4 classes"):
        LINe(None, w, b).fit_features(x, y)


def test_bad_labels(w, b, x, y):
    for bad in (y.float() + 0.5, torch.full((40,), math.nan)):
        with pytest.raises(ValueError, match="labels must be integers"):
            LINe(None, w, b).fit_features(x, bad)
    with pytest.raises(ValueError, match="labels must be integers"):
        LINe(None, w, b).fit_features(x, y > 0)
    with pytest.raises(ValueError, match="labels must have shape"):
        LINe(None, w, b).fit_features(x, y[:-1])


def test_class_without_sample(w, b, x, y):
    y = y.clone()
    y[y == 2] = 1
    with pytest.raises(ValueError, match=r"no training sample for class\(es\) 2"):
        LINe(None, w, b).fit_features(x, y)


def test_no_in_distribution_sample(w, b, x):
    with pytest.raises(ValueError, match="no in-distribution sample"):
        LINe(None, w, b).fit_features(x, -torch.ones(40, dtype=torch.long))
    loader = DataLoader(TensorDataset(x, -torch.ones(40, dtype=torch.long)), batch_size=8)
    with pytest.raises(ValueError, match="no in-distribution sample"):
        LINe(torch.nn.Identity(), w, b).fit(loader, progress=False)


def test_bad_head(w, b):
    with pytest.raises(ValueError, match="w must be a non-empty K x D"):
        LINe(None, torch.randn(6), b)
    with pytest.raises(ValueError, match=r"b must have shape K = \(4,\)"):
        LINe(None, w, torch.randn(3))
    w = w.clone()
    w[0, 0] = math.nan
    with pytest.raises(ValueError, match="w contains NaN"):
        LINe(None, w, b)


def test_clip_quantile_must_give_a_positive_clip(w, b, x, y):
    x = -x  # all activations negative
    with pytest.raises(ValueError, match="not a positive clipping threshold"):
        LINe(None, w, b, clip_quantile=0.5).fit_features(x, y)


def test_load_garbage(w, b):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        f.write(b"not a state")
        f.flush()
        with pytest.raises(ValueError, match="not a saved LINe state"):
            LINe(None, w, b).load(f.name)
    with pytest.raises(ValueError, match="not a LINe state"):
        LINe(None, w, b).load_state_dict({"weight": w})
