"""
The timm sweep: one model of every timm model module, plus head variants, split and checked.

Used by ``tests/adapter/test_timm_sweep.py`` (``benchmarks/timm_coverage.py`` covers every head
configuration of the installed timm, as new users create the models). Each model is built with
random weights (``pretrained=False``, ``num_classes=10``) at a small input size, its BatchNorm
statistics and every layer with 10 outputs are randomised (so that a wrong split cannot pass by
accident: timm initialises some heads to zero or near zero), and :func:`split_model` either
reproduces its logits on a fresh batch or refuses it with an exception.
"""

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import timm
import torch
from torch import nn

from line_plugin.adapter import split_model

NUM_CLASSES = 10
RTOL = 1e-4


@dataclass(frozen=True)
class Case:
    """One model to sweep: its timm module, name, input size and extra ``create_model`` kwargs."""

    family: str
    model: Optional[str]
    size: int = 32
    kwargs: Dict[str, Any] = field(default_factory=dict)
    skip: str = ""


# The cheapest model (fewest parameters among those that run at the smallest input) of each of
# the 98 modules of timm 1.0.31. The two largest families are built at depth 2: their head is the
# same at any depth.
FAMILIES = [
    Case("beit", "beit_base_patch16_224", 32, {"img_size": 32}),  # 85.8M
    Case("byoanet", "eca_botnext26ts_256", 32, {"img_size": 32}),  # 8.6M
    Case("byobnet", "test_byobnet", 32, {}),  # 0.2M
    Case("cait", "cait_xxs24_224", 32, {"img_size": 32}),  # 11.8M
    Case("coat", "coat_tiny", 32, {"img_size": 32}),  # 5.3M
    Case("convit", "convit_tiny", 32, {"img_size": 32}),  # 5.5M
    Case("convmixer", "convmixer_768_32", 32, {}),  # 20.3M
    Case("convnext", "test_convnext", 32, {}),  # 0.2M
    Case("cpubone", "cpubone_nano", 32, {}),  # 4.9M
    Case("crossvit", "crossvit_tiny_240", 32, {}),  # 6.7M
    Case("csatv2", "csatv2", 64, {}),  # 10.7M
    Case("cspnet", "cs3darknet_focus_s", 32, {}),  # 2.8M
    Case("cspnext", "cspnext_tiny", 32, {}),  # 2.4M
    Case("davit", "davit_tiny", 32, {}),  # 27.6M
    Case("deepseek_vit", "deepseek_vit_412m", 42, {"depth": 2}),  # 412M at full depth
    Case("deit", "deit_tiny_patch16_224", 32, {"img_size": 32}),  # 5.5M
    Case("densenet", "densenet121", 32, {}),  # 7.0M
    Case("dla", "dla46x_c", 32, {}),  # 0.8M
    Case("dpn", "dpn48b", 32, {}),  # 8.3M
    Case("edgenext", "edgenext_xx_small", 32, {}),  # 1.2M
    Case("efficientformer", "efficientformer_l1", 224, {}),  # 11.4M
    Case("efficientformer_v2", "efficientformerv2_s0", 32, {"img_size": 32}),  # 3.2M
    Case("efficientnet", "test_efficientnet", 32, {}),  # 0.1M
    Case("efficientvim", "efficientvim_m1", 32, {}),  # 5.7M
    Case("efficientvit_mit", "efficientvit_b0", 32, {}),  # 2.1M
    Case("efficientvit_msra", "efficientvit_m0", 32, {}),  # 2.2M
    Case("eva", "vit_tiny_patch16_dinov3_qkvb", 32, {}),  # 5.5M
    Case("fasternet", "fasternet_t0", 32, {}),  # 2.6M
    Case("fastvit", "fastvit_t8", 32, {}),  # 3.3M
    Case("focalnet", "focalnet_tiny_srf", 32, {}),  # 27.7M
    Case("gcvit", "gcvit_xxtiny", 32, {"img_size": 32}),  # 11.5M
    Case("gemma4_vit", "gemma4_vit_167m", 32, {"depth": 2}),  # 167M at full depth
    Case("ghostnet", "ghostnet_050", 32, {}),  # 1.3M
    Case("hardcorenas", "hardcorenas_b", 32, {}),  # 3.9M
    Case("hgnet", "hgnetv2_b0", 32, {}),  # 4.0M
    Case("hiera", "hiera_tiny_224", 32, {"img_size": 32}),  # 27.1M
    Case("hieradet_sam2", "sam2_hiera_tiny", 32, {}),  # 26.9M
    Case("hrnet", "hrnet_w18_small", 32, {}),  # 11.2M
    Case("iformer", "iformer_t", 32, {}),  # 2.6M
    Case("inception_next", "inception_next_atto", 32, {}),  # 3.2M
    Case("inception_resnet_v2", "inception_resnet_v2", 96, {}),  # 54.3M
    Case("inception_v3", "inception_v3", 96, {}),  # 21.8M
    Case("inception_v4", "inception_v4", 96, {}),  # 41.2M
    Case("lcnetv2", "lcnetv2_small", 32, {}),  # 2.9M
    Case("levit", "levit_128s", 32, {"img_size": 32}),  # 7.0M
    Case("lowformer", "lowformer_b0", 32, {}),  # 12.5M
    Case("mambaout", "test_mambaout", 32, {}),  # 0.2M
    Case("maxxvit", "test_coatnet", 32, {"img_size": 32}),  # 0.4M
    Case("metaformer", "poolformerv2_s12", 32, {}),  # 11.4M
    Case("mlp_mixer", "gmlp_ti16_224", 32, {"img_size": 32}),  # 5.7M
    Case("mobilenetv3", "lcnet_035", 32, {}),  # 0.4M
    Case("mobilenetv5", "mobilenetv5_base", 32, {}),  # 80.6M
    Case("mobilevit", "mobilevit_xxs", 32, {}),  # 1.0M
    Case("mvitv2", "mvitv2_tiny", 32, {}),  # 23.4M
    Case("naflexvit", "naflexvit_base_patch16_parfac_gap", 32, {}),  # 85.7M
    Case("nasnet", "nasnetalarge", 32, {}),  # 84.8M
    Case("nest", "nest_tiny", 32, {"img_size": 32}),  # 16.7M
    Case("nextvit", "nextvit_small", 32, {}),  # 30.7M
    Case("nfnet", "test_nfnet", 32, {}),  # 0.2M
    Case("pit", "pit_ti_224", 32, {"img_size": 32}),  # 4.6M
    Case("pnasnet", "pnasnet5large", 32, {}),  # 81.8M
    Case("pvt_v2", "pvt_v2_b0", 32, {}),  # 3.4M
    Case("qwen3_vit", "qwen3_vit_88m", 32, {}),  # 87.4M
    Case("rdnet", "rdnet_tiny", 32, {}),  # 22.8M
    Case("regnet", "regnetx_002", 32, {}),  # 2.3M
    Case("repghost", "repghostnet_050", 32, {}),  # 1.0M
    Case("repvit", "repvit_m1", 32, {}),  # 4.7M
    Case("res2net", "res2next50", 32, {}),  # 22.6M
    Case("resnest", "resnest14d", 32, {}),  # 8.6M
    Case("resnet", "test_resnet", 32, {}),  # 0.4M
    Case("resnetv2", "resnetv2_18", 32, {}),  # 11.2M
    Case("rexnet", "rexnet_100", 32, {}),  # 3.5M
    Case("selecsls", "selecsls42", 32, {}),  # 29.1M
    Case("senet", "legacy_seresnet18", 32, {}),  # 11.3M
    Case("sequencer", "sequencer2d_s", 32, {}),  # 27.3M
    Case("shvit", "shvit_s1", 32, {}),  # 6.0M
    Case("sknet", "skresnet18", 32, {}),  # 11.5M
    Case("starnet", "starnet_s050", 32, {}),  # 0.4M
    Case("swiftformer", "swiftformer_xs", 32, {}),  # 3.0M
    Case("swin_transformer", "swin_tiny_patch4_window7_224", 32, {"img_size": 32}),  # 27.5M
    Case("swin_transformer_v2", "swinv2_tiny_window16_256", 32, {"img_size": 32}),  # 27.6M
    Case("swin_transformer_v2_cr", "swinv2_cr_tiny_224", 32, {"img_size": 32}),  # 27.6M
    Case("tiny_vit", "tiny_vit_5m_224", 32, {}),  # 5.1M
    Case("tnt", "tnt_s_legacy_patch16_224", 32, {"img_size": 32}),  # 23.4M
    Case("tresnet", "tresnet_m", 32, {}),  # 29.4M
    Case("twins", "twins_svt_small", 32, {}),  # 23.6M
    Case("vgg", "vgg11", 32, {}),  # 128.8M
    Case("visformer", "visformer_tiny", 32, {"img_size": 32}),  # 9.9M
    Case("vision_transformer", "test_vit", 32, {}),  # 0.3M
    Case("vision_transformer_hybrid", "vit_tiny_r_s16_p8_224", 32, {"img_size": 32}),  # 6.1M
    Case("vision_transformer_relpos", "test_vit_relpos", 32, {"img_size": 32}),  # 0.8M
    Case("vision_transformer_sam", "samvit_base_patch16_224", 32, {}),  # 85.7M
    Case("vitamin", "vitamin_small_224", 32, {"img_size": 32}),  # 21.9M
    Case("volo", "volo_d1_224", 32, {"img_size": 32}),  # 25.9M
    Case("vovnet", "ese_vovnet19b_slim_dw", 32, {}),  # 1.4M
    Case("xception", "legacy_xception", 32, {}),  # 20.8M
    Case("xception_aligned", "xception41p", 32, {}),  # 24.9M
    Case("xcit", "xcit_nano_12_p8_224", 32, {}),  # 2.9M
]

# Heads that are not one nn.Linear on the pre-logits (see ../shared/docs/timm-heads.md).
HEAD_VARIANTS = [
    Case("deit", "deit_tiny_distilled_patch16_224", 32, {"img_size": 32}),
    Case("pit", "pit_ti_distilled_224", 32, {"img_size": 32}),
    Case("efficientvim", "efficientvim_m1_dist", 32),
    Case("levit", "levit_conv_128s", 32, {"img_size": 32}),
    Case("iformer", "iformer_l2_distilled", 32),
    Case("metaformer", "caformer_s18", 32),
    Case("metaformer", "convformer_s18", 32),
    Case("mobilenetv3", "mobilenetv3_small_050", 32),
    Case("mobilenetv3", "mobilenetv4_conv_small", 32),
    Case("ghostnet", "ghostnetv2_100", 64),
    Case("hgnet", "hgnet_tiny", 32),
    Case("mambaout", "mambaout_femto", 32),
    Case("efficientnet", "efficientnet_b0", 32),
    Case("vision_transformer", "vit_tiny_patch16_224", 32, {"img_size": 32, "patch_size": 4}),
    Case("resnet", "resnet18", 32),
    Case("convnext", "convnext_atto", 32),
]


@dataclass
class Result:
    """What the sweep found for one case: ``outcome`` is exact, refused, wrong or skipped."""

    case: Case
    outcome: str
    route: str = ""
    detail: str = ""
    features: int = 0
    head_hidden_size: int = 0
    seconds: float = 0.0


def randomise(model: nn.Module, num_classes: int = NUM_CLASSES, seed: int = 0) -> None:
    """Random BatchNorm statistics, and random weights and biases for layers with K outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                mean, var = module.running_mean, module.running_var
                mean.copy_(0.1 * torch.randn(mean.shape, generator=gen))
                var.copy_(0.5 + torch.rand(var.shape, generator=gen))
            out = getattr(module, "out_features", getattr(module, "out_channels", None))
            if isinstance(module, (nn.Linear, nn.Conv2d)) and out == num_classes:
                weight = module.weight
                fan_in = weight[0].numel()
                weight.copy_(torch.randn(weight.shape, generator=gen) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen))


def run_case(case: Case, seed: int = 0) -> Result:
    """Build, randomise, split and check one model."""
    if case.skip or case.model is None:
        return Result(case, "skipped", detail=case.skip)
    if not timm.is_model(case.model):
        return Result(case, "skipped", detail=f"not in timm {timm.__version__}")
    start = time.perf_counter()
    model = timm.create_model(case.model, pretrained=False, num_classes=NUM_CLASSES, **case.kwargs)
    randomise(model.eval(), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    probe = torch.randn(4, 3, case.size, case.size, generator=gen)
    fresh = torch.randn(3, 3, case.size, case.size, generator=gen)
    hidden = int(getattr(model, "head_hidden_size", 0) or 0)
    try:
        encoder, weight, bias = split = split_model(model, probe)
    except (ValueError, NotImplementedError) as err:
        result = Result(case, "refused", detail=f"{type(err).__name__}: {err}")
    else:
        with torch.no_grad():
            logits = model(fresh)
            estimate = encoder(fresh) @ weight.T + bias
        error = float((estimate - logits).abs().max() / logits.abs().max())
        outcome = "exact" if error <= RTOL else "wrong"
        result = Result(
            case, outcome, split.route, f"relative error {error:.1e}", weight.shape[1], hidden
        )
    result.head_hidden_size = hidden
    result.seconds = time.perf_counter() - start
    return result


def sweep(cases: List[Case]) -> List[Result]:
    """Run every case, in order."""
    return [run_case(case) for case in cases]
