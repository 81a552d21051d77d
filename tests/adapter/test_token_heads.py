"""Classifiers applied to every token: split at the token (or the mean) that makes the logits."""

import copy

import pytest
import timm
import torch
from torch import nn
from toy_classifiers import K, images, reproduces

from line_plugin.adapter import ClassifierInputs, NoLinearHeadError, split_model
from line_plugin.adapter.probes import input_shapes
from line_plugin.adapter.tokens import select

CLIP = [
    "resnet50_clip",
    "resnet101_clip",
    "resnet50x4_clip",
    "resnet50x16_clip",
    "resnet50x64_clip",
]


class PerToken(nn.Module):
    """
    A linear classifier on every token, reduced over tokens by ``reduce`` (CLIP attention pooling
    projects all tokens and keeps the first). Inputs are :math:`B \\times L \\times 12`: the number
    of tokens follows the input, plus one mean token in front, as in CLIP.
    """

    def __init__(self, reduce):
        super().__init__()
        self.body = nn.Linear(12, 8)
        self.head = nn.Linear(8, K)
        self.reduce = reduce

    def tokens(self, x):
        tokens = torch.tanh(self.body(x))
        return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)

    def forward(self, x):
        return self.reduce(self.head(self.tokens(x)))


def sequences(n=4, length=6, seed=1):
    return torch.randn(n, length, 12, generator=torch.Generator().manual_seed(seed))


def split_of(reduce, probe=None):
    torch.manual_seed(0)
    model = PerToken(reduce)
    return model, split_model(model, sequences() if probe is None else probe)


def test_first_token_is_split_at_its_input():
    model, split = split_of(lambda out: out[:, 0])
    encoder, weight, bias = split
    assert split.route == "linear layers: head at token 0"
    assert encoder.layers == ("head",) and encoder.tokens == (0,)
    assert torch.equal(weight, model.head.weight) and torch.equal(bias, model.head.bias)
    x = sequences(3, length=9, seed=2)  # another number of tokens than the probe's
    with torch.no_grad():
        assert torch.equal(encoder(x), model.tokens(x)[:, 0])
    assert reproduces(split, model, x)


def test_last_token_is_counted_from_the_end():
    model, split = split_of(lambda out: out[:, -1])
    assert split.encoder.tokens == (-1,)
    assert split.route == "linear layers: head at token -1"
    assert reproduces(split, model, sequences(3, length=11, seed=2))


def test_a_fixed_factor_is_folded_into_the_weight():
    model, split = split_of(lambda out: out[:, 2] / 4)
    assert split.encoder.tokens == (2,)
    torch.testing.assert_close(split.weight, model.head.weight.detach() / 4)
    assert reproduces(split, model, sequences(3, seed=2))


def test_mean_over_tokens_is_split_at_the_mean_input():
    model, split = split_of(lambda out: out.mean(1))
    encoder, weight, _ = split
    assert split.route == "linear layers: head mean over tokens"
    assert encoder.tokens == ("mean",)
    assert torch.equal(weight, model.head.weight)
    x = sequences(3, length=9, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), model.tokens(x).mean(1))
    assert reproduces(split, model, x)


def test_max_over_tokens_is_refused():
    with pytest.raises(NoLinearHeadError) as caught:
        split_of(lambda out: out.max(1)[0])
    message = str(caught.value)
    assert "PerToken: no linear head reproduces its logits" in message
    assert "head gives 7 x 5 values per sample" in message
    assert "neither one token's output nor their mean is the logits" in message


def test_sum_of_two_tokens_is_refused():
    with pytest.raises(NoLinearHeadError, match="neither one token's output nor their mean"):
        split_of(lambda out: out[:, 0] + out[:, 1])


def test_zero_initialised_token_head():
    torch.manual_seed(0)
    model = PerToken(lambda out: out[:, 0])
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    encoder, weight, _ = split = split_model(model, sequences())
    assert encoder.tokens == (0,)
    assert "head at token 0 (zero-initialised: checked with random weights)" in split.route
    assert torch.equal(weight, torch.zeros(K, 8))
    with torch.no_grad():  # trained later: the same features, with the head's new weights
        model.head.weight.normal_()
        model.head.bias.normal_()
        x = sequences(3, seed=2)
        estimate = encoder(x) @ model.head.weight.T + model.head.bias
        torch.testing.assert_close(estimate, model(x))


def test_encoder_tokens_need_one_per_layer():
    with pytest.raises(ValueError, match="1 tokens for 2 layers"):
        ClassifierInputs(PerToken(lambda out: out[:, 0]), ["head", "body"], tokens=[0])


def test_select_needs_tokens():
    assert torch.equal(select(torch.ones(2, 3, 4), None), torch.ones(2, 12))
    assert torch.equal(select(torch.arange(6.0).view(1, 3, 2), -1), torch.tensor([[4.0, 5.0]]))
    with pytest.raises(ValueError, match="token 0 asked of a 2-d tensor"):
        select(torch.ones(2, 3), 0)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return timm.create_model("resnet50_clip", num_classes=10).eval()


@pytest.mark.slow
def test_resnet50_clip_is_split_at_the_pooled_token(clip):
    model = copy.deepcopy(clip)
    split = split_model(model, images(2, 64))  # 2 x 2 feature map: 5 tokens
    assert split.route == "pretrained_cfg['classifier']: head.proj at token 0"
    assert split.encoder.layers == ("head.proj",) and split.encoder.tokens == (0,)
    assert torch.equal(split.weight, model.head.proj.weight)
    assert split.encoder(images(2, 96)).shape == (2, 2048)
    assert reproduces(split, model, images(3, 96, seed=2), rtol=1e-4)  # 10 tokens


@pytest.mark.slow
def test_resnet50_clip_reset_classifier(clip):
    model = copy.deepcopy(clip)
    model.reset_classifier(7)
    split = split_model(model, images(2, 64))
    assert split.weight.shape == (7, 2048) and split.encoder.tokens == (0,)
    assert reproduces(split, model.eval(), images(2, 64, seed=2), rtol=1e-4)
    model.reset_classifier(0)  # head.proj is now an identity: no classifier left
    with pytest.raises(ValueError, match="num_classes=0"):
        split_model(model, images(2, 64))


@pytest.mark.slow
@pytest.mark.parametrize("name", CLIP)
def test_clip_family(name):
    with torch.device("meta"):  # no weights: configuration only
        model = timm.create_model(name, num_classes=0)
        with pytest.raises(ValueError, match="num_classes=0"):
            split_model(model)
        model = timm.create_model(name, num_classes=10)
    # the default probe takes the size of pretrained_cfg (224, 288, 384 or 448 pixels)
    assert next(input_shapes(model)) == tuple(model.pretrained_cfg["input_size"])
    assert model.pretrained_cfg["classifier"] == "head.proj"
    assert type(model.head).__name__ == "AttentionPool2d"
