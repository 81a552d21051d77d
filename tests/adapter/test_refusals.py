"""Models with no exact linear head, or no classifier, are refused with the reason."""

import unittest

import pytest
import timm
import torch
from torch import nn
from toy_classifiers import MLP, AuxMax, K, LogSoftmax, Squeeze, TupleOut, TwiceHead, images

from line_plugin.adapter import NoLinearHeadError, split_model


class TestRefusals(unittest.TestCase):
    def assertRefused(self, model, error, *words, probe=None):
        with self.assertRaises(error) as caught:
            split_model(model, probe)
        for word in (type(model).__name__, *words):
            self.assertIn(word, str(caught.exception))

    def test_aux_token_head(self):
        # aux_head runs on every token, but the logits take a max over tokens, not one token
        self.assertRefused(
            AuxMax(),
            NotImplementedError,
            "aux_head gives 3 x 5 values per sample, and neither one token's output nor their "
            "mean is the logits",
        )

    def test_squeezenet_like(self):
        self.assertRefused(Squeeze(), NotImplementedError, probe=images())

    def test_nonlinear_output(self):
        self.assertRefused(LogSoftmax(), NotImplementedError, "no fixed mix of fc")

    def test_layer_called_twice(self):
        self.assertRefused(TwiceHead(), NotImplementedError, "fc runs 2 times")

    def test_tuple_output(self):
        self.assertRefused(TupleOut(), ValueError, "not B x K logits")

    def test_all_zero_logits_without_a_zero_classifier(self):
        model = MLP()
        nn.init.zeros_(model.body[2].weight)  # features all zero; the classifier is not
        nn.init.zeros_(model.body[2].bias)
        nn.init.zeros_(model.fc.bias)
        self.assertRefused(model, ValueError, "all-zero logits", "none of its layers with 5")

    def test_rejected_probe(self):
        self.assertRefused(MLP(), ValueError, "rejected the probe given", probe=torch.randn(2, 3))

    def test_timm_num_classes_zero(self):
        model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
        self.assertRefused(model, ValueError, "num_classes=0")

    def test_timm_encoder_without_classifier(self):
        with torch.device("meta"):  # refused before any forward pass: no weights needed
            model = timm.create_model("qwen3_vit_88m_enc", pretrained=False)
        self.assertRefused(model, ValueError, "encoder without a classifier")

    def test_refusal_is_both_not_implemented_and_value_error(self):
        self.assertTrue(issubclass(NoLinearHeadError, NotImplementedError))
        self.assertTrue(issubclass(NoLinearHeadError, ValueError))
        self.assertRefused(LogSoftmax(), NoLinearHeadError)

    def test_timm_volo(self):
        model = timm.create_model("volo_d1_224", pretrained=False, num_classes=K, img_size=32)
        self.assertRefused(
            model,
            NotImplementedError,
            "aux_head gives 4 x 5 values per sample, and neither",
            probe=images(4),
        )


def test_torchvision_squeezenet_refused():
    import torchvision

    model = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    with pytest.raises(NotImplementedError, match="SqueezeNet: no linear head"):
        split_model(model, images(2, 64))
