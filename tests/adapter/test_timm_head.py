"""timm's own head API is the first route: taken where it is exact, else the layer routes."""

import pytest
import timm
import torch
from timm_zoo import randomise
from toy_classifiers import K, TimmStyle, images, reproduces, vectors

from line_plugin.adapter import ClassifierInputs, PreLogits, split_model

PUBLIC = "timm forward_head(pre_logits=True)"


def pre_logits(model, x):
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


@pytest.mark.parametrize(
    "name,kwargs,layer",
    [("test_resnet", {}, "fc"), ("test_vit", {"img_size": 32}, "head")],
)
def test_plain_timm_model_takes_the_public_route(name, kwargs, layer):
    model = timm.create_model(name, pretrained=False, num_classes=K, **kwargs)
    randomise(model, num_classes=K)
    encoder, weight, bias = split = split_model(model, images(4, seed=0))
    assert split.route == f"{PUBLIC}: {layer}"
    assert isinstance(encoder, PreLogits) and encoder.layers == (layer,)
    classifier = model.get_classifier()
    assert torch.equal(weight, classifier.weight) and torch.equal(bias, classifier.bias)
    x = images(3, seed=2)
    features = encoder(x).detach()
    assert torch.equal(features, pre_logits(model, x))
    # the same tensors as the hooked input of the layer pretrained_cfg names (the former route)
    with torch.no_grad():
        assert torch.equal(features, ClassifierInputs(model, [layer])(x))
    assert reproduces(split, model, x, rtol=1e-5)


def test_public_route_on_a_timm_style_model():
    model = TimmStyle()
    split = split_model(model)
    assert split.route == f"{PUBLIC}: fc"
    assert torch.equal(split.encoder(vectors()), pre_logits(model, vectors()))


@pytest.mark.parametrize(
    "head,route",
    [
        # pre-logits before the BatchNorm: the post-norm input of fc, as before the public route
        ("norm", "linear layers: fc"),
        # ... also where that BatchNorm, as initialised, is the identity within the tolerance
        ("norm_init", "linear layers: fc"),
        # the logits equal the classifier's output but are not it: the noisy pass tells
        ("copy", "linear layers: fc_copy"),
        # a forward_head that ignores pre_logits gives K features for a head of 8 inputs
        ("logits", "linear layers: fc"),
    ],
)
def test_falls_back_where_the_public_route_is_not_exact(head, route):
    model = TimmStyle(head)
    encoder, weight, bias = split = split_model(model)
    assert split.route == route
    assert isinstance(encoder, ClassifierInputs)
    layer = route.split(": ")[1]
    assert torch.equal(weight, model.get_submodule(layer).weight)
    with torch.no_grad():
        assert torch.equal(encoder(vectors()), model.norm(model.body(vectors())))
    assert reproduces(split, model, vectors(seed=3))


def test_zero_initialised_classifier_on_the_public_route():
    model = TimmStyle()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
    encoder, weight, bias = split = split_model(model)
    assert split.route == f"{PUBLIC}: fc (zero-initialised: checked with random weights)"
    assert not weight.any() and not bias.any() and not model.fc.weight.any()
    with torch.no_grad():  # trained later: the same features, with the trained weights
        model.fc.weight.normal_()
        model.fc.bias.normal_()
    assert reproduces(
        (encoder, model.fc.weight.detach(), model.fc.bias.detach()), model, vectors()
    )


def test_pre_logits_encoder_refuses_training_mode():
    model = TimmStyle()
    encoder = split_model(model).encoder
    model.train()
    with pytest.raises(RuntimeError, match=r"model\.eval\(\)"):
        encoder(vectors())
