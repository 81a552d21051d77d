"""
``preset="auto"`` (:mod:`line_plugin.plugin.auto`): the rule on synthetic features (Energy where
pruning cannot help, pruning where it clearly does), the held-out split and the outliers of
``fit``, determinism, the path through ``from_model`` on small random timm models, and the
errors.
"""

import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from line_plugin import LINe
from line_plugin.plugin import auto
from line_plugin.plugin.presets import resolve_preset

K, D = 4, 80


def evidence_spread_evenly(seed: int = 0):
    """
    Signed Gaussian features whose class evidence is spread evenly over all neurons: the
    energy of the full logits is the matched filter, so masks and clips only lose evidence.
    Outliers are noise of the same scale without class evidence.
    """
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(K, D, generator=g)
    y = torch.arange(800) % K
    x = 0.3 * w[y] + torch.randn(800, D, generator=g)
    held = torch.arange(200) % K
    x_held = 0.3 * w[held] + torch.randn(200, D, generator=g)
    outliers = 1.3 * torch.randn(200, D, generator=g)
    return w, (x, y), x_held, outliers


def shared_neurons_fool_energy(seed: int = 0):
    """
    Post-ReLU features: class ``c`` lives in neurons ``10c .. 10c + 9``; neurons 40..79 feed
    every logit a little. Outliers fire the shared neurons strongly, which raises all their
    logits (Energy calls them ID), but the class neurons weakly: LINe's activation mask, which
    keeps the few neurons that matter to the predicted class, separates them.
    """
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(K, D)
    for c in range(K):
        w[c, 10 * c : 10 * c + 10] = 1.0
    w[:, 40:] = 0.5

    def id_features(n):
        y = torch.arange(n) % K
        x = 0.2 * torch.rand(n, D, generator=g)
        for c in range(K):
            x[y == c, 10 * c : 10 * c + 10] += 1 + 0.2 * torch.rand(
                int((y == c).sum()), 10, generator=g
            )
        return x, y

    fit = id_features(800)
    x_held, _ = id_features(200)
    outliers = 0.3 * torch.rand(200, D, generator=g)
    outliers[:, 40:] += 1.5 * torch.rand(200, D - 40, generator=g)
    return w, fit, x_held, outliers


def test_falls_back_to_energy_where_pruning_cannot_help():
    w, fit, x_held, outliers = evidence_spread_evenly()
    detector = LINe(None, w).fit_features(*fit)
    choice = auto.choose(detector, x_held, outliers)
    assert choice.name == "energy"
    assert (detector.p_a, detector.p_w, detector.clip) == (0.0, 0.0, None)
    # not a saturated problem: Energy separates, but not perfectly, and it scored every candidate
    assert 60 < choice.val_auroc["energy"] < 99
    assert set(choice.val_auroc) == set(auto.CANDIDATES)
    assert choice.signed  # Gaussian features are signed
    assert "negative" in choice.signed_note()


def test_chooses_pruning_where_it_clearly_helps():
    w, fit, x_held, outliers = shared_neurons_fool_energy()
    detector = LINe(None, w).fit_features(*fit)
    choice = auto.choose(detector, x_held, outliers)
    assert choice.val_auroc["energy"] < 50  # Energy is fooled
    assert choice.name != "energy" and choice.p_a > 0
    assert choice.val_auroc[choice.name] - choice.val_auroc["energy"] >= auto.MARGIN
    assert not choice.signed and choice.signed_note() is None
    assert (detector.p_a, detector.p_w) == (choice.p_a, choice.p_w)
    assert "gains" in choice.reason


def test_too_few_held_out_images_choose_energy():
    w, fit, x_held, outliers = shared_neurons_fool_energy()
    detector = LINe(None, w).fit_features(*fit)
    choice = auto.choose(detector, x_held[: auto.MIN_HELD_OUT - 1], outliers)
    assert choice.name == "energy" and choice.val_auroc == {}
    assert f"fewer than {auto.MIN_HELD_OUT}" in choice.reason


def test_auroc_counts_ties_half():
    assert auto.auroc(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])) == 87.5


def test_outliers_depend_on_image_and_seed_only():
    x = torch.randn(8, 3, 16, 16)
    seeds = auto.outlier_seeds(3, range(8))
    a = auto.synthetic_outliers(x, seeds)
    assert torch.equal(a, auto.synthetic_outliers(x, seeds))
    assert torch.equal(a[5:], auto.synthetic_outliers(x[5:], seeds[5:]))  # batch independent
    for i, seed in enumerate(seeds):
        if seed % 4 < 2:  # tiles shuffled: the same values, moved
            assert torch.equal(a[i].flatten().sort().values, x[i].flatten().sort().values)
            assert not torch.equal(a[i], x[i])
    with pytest.raises(ValueError, match="one seed per input"):
        auto.synthetic_outliers(x, seeds[:3])


# -- fit(loader) through from_model ----------------------------------------------------------


def images(n: int = 240, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.5 + y[:, None, None, None] * 0.5
    return DataLoader(TensorDataset(x, y), batch_size=64)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=3).eval()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("test_vit", img_size=32, num_classes=3).eval()


@pytest.fixture(scope="module")
def fitted_resnet(resnet):
    detector = LINe.from_model(resnet)
    assert detector.auto and detector.auto_choice is None
    return detector.fit(images(), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_from_model_defaults_to_auto_and_chooses_at_fit(name, request):
    if name == "resnet":
        detector = request.getfixturevalue("fitted_resnet")
    else:
        detector = LINe.from_model(request.getfixturevalue(name))
        assert detector.auto and detector.auto_choice is None
        detector.fit(images(), progress=False)
    choice = detector.auto_choice
    # every 10th of 240 images held out, never fitted on
    assert choice.held_out == 24 and int(detector.class_counts.sum()) == 216
    assert set(choice.val_auroc) == set(auto.CANDIDATES)
    hp = auto.CANDIDATES[choice.name]
    assert (detector.p_a, detector.p_w) == (hp["p_a"], hp["p_w"])
    assert detector.clip_quantile == hp.get("clip_quantile")
    assert choice.clip == detector.clip
    scores = detector(next(iter(images()))[0])
    assert scores.shape == (64,) and torch.isfinite(scores).all()


@pytest.mark.slow
def test_auto_is_deterministic_for_a_seed(resnet, fitted_resnet):
    again = LINe.from_model(resnet).fit(images(), progress=False)
    assert again.auto_choice == fitted_resnet.auto_choice
    assert torch.equal(again.class_means, fitted_resnet.class_means)


@pytest.mark.slow
def test_choice_is_saved_in_the_state_file(resnet, fitted_resnet, tmp_path):
    from line_plugin.plugin.state import read_state

    detector = fitted_resnet
    detector.save(tmp_path / "s.pt", backbone="resnet18")
    state, metadata = read_state(tmp_path / "s.pt")
    assert metadata["backbone"] == "resnet18"
    assert metadata["auto"]["name"] == detector.auto_choice.name
    assert metadata["auto"]["summary"] == detector.auto_choice.summary()
    assert state["hyperparameters"]["p_a"] == detector.p_a
    loaded = LINe.from_model(resnet, preset="cifar10").load(tmp_path / "s.pt")
    x = next(iter(images()))[0]
    assert torch.equal(loaded(x), detector(x))


def test_choice_is_logged(caplog):
    w, fit, x_held, outliers = evidence_spread_evenly()
    with caplog.at_level("INFO", logger="line_plugin.plugin.auto"):
        choice = auto.choose(LINe(None, w).fit_features(*fit), x_held, outliers)
    assert choice.summary() in caplog.text and choice.signed_note() in caplog.text


def test_explicit_settings_are_not_auto(resnet):
    assert not LINe.from_model(resnet, preset="cifar10").auto
    detector = LINe.from_model(resnet, p_w=0.5)  # constructor defaults for the others
    assert not detector.auto and (detector.p_a, detector.p_w, detector.clip) == (0.9, 0.5, 1.0)
    assert LINe.from_preset("auto", None, torch.ones(2, 3), None).auto


def test_core_defaults_stay_the_papers():
    detector = LINe(None, torch.ones(2, 3))
    assert (detector.p_a, detector.p_w, detector.clip) == (0.9, 0.9, 1.0)
    assert not detector.auto


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m: LINe.from_model(m, preset="auto", p_a=0.5), "preset 'auto' chooses"),
        (lambda m: LINe.from_model(m, preset="auto", clip=None), "drop clip"),
        (lambda m: LINe.from_model(m, preset="svhn"), "unknown preset 'svhn'"),
        (lambda m: LINe.from_preset("nope", None, torch.ones(2, 3), None), "unknown preset"),
        (lambda m: LINe.from_model(m).fit_features(torch.ones(3, 96), torch.zeros(3)), "images"),
    ],
)
def test_bad_input_is_one_line(resnet, call, message):
    with pytest.raises(ValueError, match=message) as e:
        call(resnet)
    assert "\n" not in str(e.value)


def test_resolve_preset():
    assert resolve_preset(None, []) == "auto"
    assert resolve_preset(None, ["p_a"]) is None
    assert resolve_preset("cifar10", ["p_a"]) == "cifar10"
    with pytest.raises(ValueError, match="drop p_a, p_w"):
        resolve_preset("auto", ["p_w", "p_a"])
