"""
The timm sweep: every timm model module, split with random weights and checked on a fresh batch.

The cases and the check live in ``tests/timm_zoo.py``. Small inputs and randomised heads keep it
within a few minutes; ``benchmarks/timm_coverage.py`` covers every head configuration of the
installed timm as new users create the models (default input, timm's own initialisation).
"""

from typing import Dict, List

import pytest
import timm
from timm_zoo import FAMILIES, HEAD_VARIANTS, Result, sweep

pytestmark = pytest.mark.slow  # about 30 s on an idle core: the quick tier has test_timm_head.py

# Models with no exact linear head, and the words their refusal must give.
EXPECTED_REFUSALS = {"volo_d1_224": ["VOLO", "aux_head"]}

CFG = "pretrained_cfg['classifier']: "
PUBLIC = "timm forward_head(pre_logits=True): "

# Heads that are not one nn.Linear on the pre-logits, and one that is: (route, features).
# timm's own head API splits the convolution heads and those with a hidden layer; the others
# fall back to the layers pretrained_cfg names.
EXPECTED_ROUTES = {
    "deit_tiny_distilled_patch16_224": (
        CFG + "0.5 head + 0.5 head_dist, inputs concatenated",
        384,
    ),
    "pit_ti_distilled_224": (CFG + "0.5 head + 0.5 head_dist, inputs concatenated", 512),
    "efficientformer_l1": (CFG + "(0.5 head + 0.5 head_dist) on one shared input", 448),
    "swiftformer_xs": (CFG + "(0.5 head + 0.5 head_dist) on one shared input", 220),
    "crossvit_tiny_240": (CFG + "0.5 head.0 + 0.5 head.1, inputs concatenated", 96 + 192),
    "levit_128s": (CFG + "0.5 head.linear + 0.5 head_dist.linear, inputs concatenated", 768),
    "repvit_m1": (CFG + "0.5 head.head.l + 0.5 head.head_dist.l, inputs concatenated", 768),
    "efficientvit_m0": (CFG + "head.linear", 192),  # timm's pre-logits precede a BatchNorm
    "shvit_s1": (CFG + "head.l", 320),  # likewise
    "caformer_s18": (CFG + "head.fc.fc2", 2048),  # get_classifier() is the whole MLP head
    "convformer_s18": (CFG + "head.fc.fc2", 2048),
    "sequencer2d_s": (CFG + "head.fc", 384),  # get_classifier() is the whole head
    "dla46x_c": (PUBLIC + "fc", 256),  # a 1x1 convolution on pooled features
    "dpn48b": (PUBLIC + "classifier", 832),
    "resnetv2_18": (PUBLIC + "head.fc", 512),
    "vgg11": (PUBLIC + "head.fc", 4096),  # a hidden layer before the classifier
    "mobilenetv3_small_050": (PUBLIC + "classifier", 1024),
    "test_resnet": (PUBLIC + "fc", 96),  # one nn.Linear on the pre-logits
}


@pytest.fixture(scope="module")
def results() -> Dict[str, Result]:
    # one thread, pinned by conftest.py's autouse fixture
    return {r.case.model: r for r in sweep(FAMILIES + HEAD_VARIANTS)}


def family_results(results: Dict[str, Result]) -> List[Result]:
    return [results[case.model] for case in FAMILIES if case.model is not None]


def test_one_case_per_timm_module():
    families = [case.family for case in FAMILIES]
    assert len(families) == len(set(families))
    installed = set(timm.list_modules())
    # a newer timm may add modules: at most 5 % of them may lack a case until one is added
    assert len(installed - set(families)) <= 0.05 * len(installed), installed - set(families)
    for case in FAMILIES + HEAD_VARIANTS:
        if case.model is not None and case.family in installed:
            assert case.model in timm.list_models(module=case.family), case


def test_no_model_is_split_wrongly(results):
    wrong = {n: r.detail for n, r in results.items() if r.outcome not in {"exact", "refused"}}
    assert not wrong


def test_refusals_are_the_expected_ones_and_say_why(results):
    refused = {name: r.detail for name, r in results.items() if r.outcome == "refused"}
    expected = {n for n in EXPECTED_REFUSALS if results[n].outcome != "skipped"}
    assert set(refused) == expected
    for name in expected:
        for word in EXPECTED_REFUSALS[name]:
            assert word in refused[name]


def test_at_least_95_percent_of_families_exact(results):
    # over every model module of the installed timm: one not covered counts as not exact
    exact = [r for r in family_results(results) if r.outcome == "exact"]
    assert len(exact) >= 0.95 * len(timm.list_modules())


def test_single_head_features_have_head_hidden_size(results):
    for r in results.values():
        if r.outcome == "exact" and "inputs concatenated" not in r.route:
            assert r.features == r.head_hidden_size or r.case.model in EXPECTED_ROUTES, r


@pytest.mark.parametrize("model", sorted(EXPECTED_ROUTES))
def test_head_routes(results, model):
    route, features = EXPECTED_ROUTES[model]
    result = results[model]
    if result.outcome == "skipped":
        pytest.skip(result.detail)
    assert result.outcome == "exact", result
    assert result.route == route
    assert result.features == features
