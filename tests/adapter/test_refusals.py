"""Models with no exact linear head, or no classifier, are refused with the reason."""

import pytest
import timm
import torch
import torchvision
from torch import nn
from toy_classifiers import MLP, AuxMax, K, LogSoftmax, Squeeze, TupleOut, TwiceHead, images

from line_plugin.adapter import NoLinearHeadError, split_model


def refused(model, error, *words, probe=None):
    """Split the model, expecting ``error`` with the model's name and ``words`` in its message."""
    with pytest.raises(error) as caught:
        split_model(model, probe)
    for word in (type(model).__name__, *words):
        assert word in str(caught.value)


def test_aux_token_head():
    # aux_head runs on every token, but the logits take a max over tokens, not one token
    refused(
        AuxMax(),
        NotImplementedError,
        "aux_head gives 3 x 5 values per sample, and neither one token's output nor their "
        "mean is the logits",
    )


def test_squeezenet_like():
    refused(Squeeze(), NotImplementedError, probe=images())


def test_nonlinear_output():
    refused(LogSoftmax(), NotImplementedError, "no fixed mix of fc")


def test_layer_called_twice():
    refused(TwiceHead(), NotImplementedError, "fc runs 2 times")


def test_tuple_output():
    refused(TupleOut(), ValueError, "not B x K logits")


def test_all_zero_logits_without_a_zero_classifier():
    model = MLP()
    nn.init.zeros_(model.body[2].weight)  # features all zero; the classifier is not
    nn.init.zeros_(model.body[2].bias)
    nn.init.zeros_(model.fc.bias)
    refused(model, ValueError, "all-zero logits", "none of its layers with 5")


def test_rejected_probe():
    refused(MLP(), ValueError, "rejected the probe given", probe=torch.randn(2, 3))


def test_timm_num_classes_zero():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    refused(model, ValueError, "num_classes=0")


def test_timm_encoder_without_classifier():
    with torch.device("meta"):  # refused before any forward pass: no weights needed
        model = timm.create_model("qwen3_vit_88m_enc", pretrained=False)
    refused(model, ValueError, "encoder without a classifier")


def test_refusal_is_both_not_implemented_and_value_error():
    assert issubclass(NoLinearHeadError, NotImplementedError)
    assert issubclass(NoLinearHeadError, ValueError)
    refused(LogSoftmax(), NoLinearHeadError)


@pytest.mark.slow
def test_timm_volo():
    model = timm.create_model("volo_d1_224", pretrained=False, num_classes=K, img_size=32)
    refused(
        model,
        NotImplementedError,
        "aux_head gives 4 x 5 values per sample, and neither",
        probe=images(4),
    )


@pytest.mark.slow
def test_torchvision_squeezenet():
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    refused(model, NotImplementedError, ": no linear head", probe=images(2, 64))
