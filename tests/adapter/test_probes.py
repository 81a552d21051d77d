"""Probes: built from the input the model declares before the stem guesses, run once."""

import pytest
import timm
import torch
import torchvision
from timm_zoo import randomise
from toy_classifiers import MLP, K, images, reproduces

from line_plugin.adapter import split_model
from line_plugin.adapter.probes import DEFAULT_RTOL, find_probe, input_shapes


def shapes(name: str, **kwargs) -> list:
    """The probe shapes of a timm model, in order; built on the meta device (no weights)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=K, **kwargs)
    return list(dict.fromkeys(input_shapes(model)))


def test_tresnet_channels_come_from_the_config_not_the_stem():
    # TResNet's first convolution follows a space-to-depth step: 48 input channels
    assert shapes("tresnet_m")[0] == (3, 224, 224)


def test_own_image_size_before_the_config():
    assert shapes("vit_tiny_patch16_224", img_size=32)[0] == (3, 32, 32)
    # MLP-Mixer keeps its size in the stem, not in a patch_embed
    assert shapes("mixer_s32_224", img_size=64)[0] == (3, 64, 64)


def test_own_channels_before_the_config():
    assert shapes("test_resnet", in_chans=1)[0] == (1, 160, 160)


def test_config_size():
    assert shapes("inception_v3")[0] == (3, 299, 299)


def test_plain_models():
    assert list(input_shapes(MLP()))[0] == (12,)
    model = torchvision.models.resnet18(weights=None)
    assert list(input_shapes(model)) == [(3, 224, 224)]


def test_probe_carries_the_batch_logits_and_tolerance():
    model = MLP().eval()
    probe = find_probe(model)
    assert probe.x.shape == (4, 12) and probe.classes == K and probe.rtol == DEFAULT_RTOL
    with torch.no_grad():
        assert torch.equal(probe.logits, model(probe.x))
    assert probe.params == {} and probe.noisy_logits is None
    assert probe.with_zero_heads(model) is probe  # no zero classifier: nothing to replace


def test_probe_with_zero_heads_replaces_them_in_every_pass():
    model = MLP().eval()
    with torch.no_grad():
        model.fc.weight.zero_()
    probe = find_probe(model).with_zero_heads(model)
    assert set(probe.params) == {"fc.weight", "fc.bias"} and probe.zero_layers == ("fc",)
    with torch.no_grad():
        expected = model.body(probe.x) @ probe.params["fc.weight"].T + probe.params["fc.bias"]
    # one float32 matrix product each, in another order
    torch.testing.assert_close(probe.logits, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(probe.run(model), probe.logits)
    assert not model.fc.weight.any()


def test_the_first_probe_the_model_accepts_is_taken():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=K).eval()
    model.in_chans = 2  # a wrong declaration: the 2-channel probe fails, the config's 3 run
    assert shapes_of(model)[:2] == [(2, 160, 160), (3, 160, 160)]
    assert find_probe(model).x.shape == (4, 3, 160, 160)


def test_a_rejected_probe_is_reported():
    with pytest.raises(ValueError, match=r"MLP rejected the probe given: \(2, 3\): RuntimeError"):
        find_probe(MLP().eval(), torch.randn(2, 3))


def shapes_of(model) -> list:
    return list(dict.fromkeys(input_shapes(model)))


def test_timm_one_channel_model():
    # pretrained_cfg says 3 channels whatever in_chans was: the model's own in_chans decides
    model = timm.create_model("test_resnet", pretrained=False, num_classes=K, in_chans=1)
    randomise(model, num_classes=K)
    split = split_model(model)
    assert reproduces(split, model, torch.randn(2, 1, 160, 160))


def test_timm_cnn_at_cfg_size():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=K)
    randomise(model, num_classes=K)
    assert reproduces(split_model(model), model, images(2, 160))


@pytest.mark.slow
def test_timm_model_with_own_image_size():
    # pretrained_cfg still says 224: the model's patch_embed.img_size is tried first
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=K, img_size=32, patch_size=4
    )
    randomise(model, num_classes=K)
    split = split_model(model)
    assert split.route == "timm forward_head(pre_logits=True): head"
    assert reproduces(split, model, images())


@pytest.mark.slow
def test_torchvision_at_224():
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=K)
    randomise(model, num_classes=K)
    split = split_model(model)
    assert split.route == "linear layers: classifier.3"
    assert reproduces(split, model, images(2, 64))


@pytest.mark.slow
def test_tresnet_splits_with_the_default_probe():
    model = timm.create_model("tresnet_m", pretrained=False, num_classes=10)
    split = split_model(model)
    assert split.route == "timm forward_head(pre_logits=True): head.fc"
    assert reproduces(split, model, images(2, 224, seed=3), rtol=1e-4)
