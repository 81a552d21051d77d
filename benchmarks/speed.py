"""
Speed and memory of LINe at ImageNet scale (K=1000 classes, D=2048 features, batch 256), as
ratios measured in one run on one machine:

- scoring cost per sample relative to a ResNet-50 forward pass per sample (target: at most 2 %),
  and the extra memory scoring takes (target: at most 1 GB);
- fitting 20,000 features, thresholds included (target: at most 20 s);
- LINe against a literal per-sample transcription of the algorithm (the authors' approach, one
  K x D mask per sample) and against pytorch-ood's DICE, which builds a B x K x D tensor.

On a GPU (``--device cuda``) the same run also measures, each with its peak memory: the fused
scoring kernel (the path LINe takes there) against the per-class loop it replaces, pytorch-ood's
EnergyBased (the floor: one plain matrix product and a log-sum-exp), and a ResNet-50 forward in
bfloat16 autocast with channels_last besides the float32 one (targets there: scoring at most 2 %
of the float32 forward, faster than DICE, at most 64 MB extra).

Run: ``python benchmarks/speed.py`` (``--quick`` for a smoke run). Writes
``benchmarks/results/speed.json`` and ``speed.md`` (``speed_cuda.*`` with ``--device cuda``;
there the section of earlier runs at the end of ``speed_cuda.md`` is kept).
"""

import argparse
import copy
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict
from unittest import mock

import numpy as np
import torch
import torchvision
from pytorch_ood.detector import DICE, EnergyBased

from line_plugin import LINe
from line_plugin.core import LINe as CoreLINe
from line_plugin.plugin import fused

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import reference_scores  # noqa: E402  (the literal transcription of the tests)


def rss_mb(field: str = "VmRSS") -> float:
    """resident memory of this process (``VmRSS``) or its peak (``VmHWM``), in MB"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_extra_mb(fn: Callable[[], object], device: str = "cpu") -> float:
    """peak memory that ``fn`` adds, in MB: resident memory on the CPU (Linux: the peak is reset
    through ``clear_refs``), allocated memory on a CUDA device"""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")
    before = rss_mb()
    fn()
    return rss_mb("VmHWM") - before


def _memory_child(path: str) -> None:
    """in a fresh process (no freed heap to reuse): the peak memory of one predict_features"""
    payload = torch.load(path, weights_only=False)
    detector, test, device = payload["detector"], payload["test"], payload["device"]
    print(json.dumps(peak_extra_mb(lambda: detector.predict_features(test), device)))


def predict_memory_mb(detector, test: torch.Tensor, device: str) -> float:
    """peak extra memory of the first ``predict_features`` of ``detector``, in MB, measured in a
    child process on the CPU (the parent's heap holds freed memory that would hide it)"""
    if device.startswith("cuda"):
        return peak_extra_mb(lambda: detector.predict_features(test), device)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/payload.pt"
        torch.save({"detector": detector, "test": test, "device": device}, path)
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", path],
            check=True,
            capture_output=True,
            text=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


def seconds(fn: Callable[[], object], repeat: int = 3, device: str = "cpu") -> float:
    """best wall time of ``repeat`` calls, after one warm-up"""

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    best = float("inf")
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def features_for(w: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """post-ReLU features whose predicted class is ``labels`` (so a batch spans many classes)"""
    noise = torch.rand(labels.shape[0], w.shape[1], generator=g)
    return noise + 4 * torch.relu(w[labels]) / w.abs().mean()


def literal_scores(det: LINe, x: torch.Tensor) -> np.ndarray:
    """the authors' approach (the tests' reference): per sample, the dense K x D masks from the
    contributions of the detector's class means"""
    means, w, b = (t.numpy() for t in (det.class_means, det.weight, det.bias))
    return reference_scores(means, w, b, x.numpy(), det.p_a, det.p_w, det.clip)


def run(quick: bool = False, device: str = "cpu") -> Dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    num_classes, num_features, batch = 1000, 2048, 256
    fit_samples = 2000 if quick else 20000
    cuda = device.startswith("cuda")

    resnet = torchvision.models.resnet50().eval().to(device)
    w, b = resnet.fc.weight.detach().cpu(), resnet.fc.bias.detach().cpu()
    images = torch.randn(batch if cuda else (8 if quick else 32), 3, 224, 224, generator=g)
    images = images.to(device)
    with torch.no_grad():
        repeat = 1 if quick else (5 if cuda else 2)
        forward = seconds(lambda: resnet(images), repeat, device) / images.shape[0]

    y = torch.arange(fit_samples) % num_classes
    x = features_for(w, y, g)
    det = LINe.from_preset("imagenet", None, w, b).to(device)
    start = time.perf_counter()
    det.fit_features(x.to(device), y.to(device))
    fit_time = time.perf_counter() - start
    stats = CoreLINe(None, w, b)  # its fit is the streaming class sums, without the thresholds
    accumulate = seconds(lambda: stats.fit_features(x.to(device), y), 1, device) / fit_samples

    test = features_for(w, torch.randperm(num_classes, generator=g)[:batch], g).to(device)
    logits = test.clamp(max=det.clip) @ det.weight.to(device, torch.float32).T
    distinct = int(torch.unique(logits.argmax(1)).numel())
    if cuda:  # fresh copies for the loop, and the kernel's autotuning done on another one
        loop_det, first_call = copy.deepcopy(det), copy.deepcopy(det)
        start = time.perf_counter()
        first_call.predict_features(test)
        torch.cuda.synchronize()
        first_call_seconds = time.perf_counter() - start
    # the first call also derives the compute copies of W and the thresholds
    predict_memory = predict_memory_mb(det, test, device)
    predict = seconds(lambda: det.predict_features(test), 20 if cuda else 3, device) / batch

    dice = DICE(None, w, b, p=0.9).to(device).fit_features(x.to(device), y.to(device))
    dice_memory = predict_memory_mb(dice, test, device)
    dice_time = seconds(lambda: dice.predict_features(test), 5 if cuda else 1, device) / batch

    few = test[: 4 if quick else 8].cpu()
    cpu_det = LINe(None, w, b, **det.get_hyperparameters()).load_state_dict(det.state_dict())
    literal = seconds(lambda: literal_scores(cpu_det, few), 1) / few.shape[0]
    expected = det.predict_features(few.double()).cpu().numpy()
    literal_error = float(np.abs(literal_scores(cpu_det, few) - expected).max())

    name = torch.cuda.get_device_name(device) if cuda else platform.machine()
    extra = {}
    if cuda:
        extra = gpu_paths(resnet, images, det, loop_det, test, w, b, forward, predict, device)
        extra["line_fused_first_call_seconds"] = first_call_seconds
    return {
        "device": device,
        "machine": f"{name}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}",
        "num_classes": num_classes,
        "num_features": num_features,
        "batch": batch,
        "distinct_predicted_classes_in_batch": distinct,
        "resnet50_forward_ms_per_sample": forward * 1e3,
        "line_predict_ms_per_sample": predict * 1e3,
        "line_predict_vs_resnet50_forward": predict / forward,
        "line_predict_extra_memory_mb": predict_memory,
        "line_fit_samples": fit_samples,
        "line_fit_seconds": fit_time,
        "line_fit_accumulate_vs_resnet50_forward": accumulate / forward,
        "dice_predict_ms_per_sample": dice_time * 1e3,
        "dice_predict_extra_memory_mb": dice_memory,
        "literal_per_sample_ms": literal * 1e3,
        "line_speedup_over_literal": literal / predict,
        "line_speedup_over_dice": dice_time / predict,
        "literal_max_abs_difference": literal_error,
        **extra,
    }


def per_class_loop():
    """within it, LINe scores through the core's per-class loop, as before the fused kernel"""
    return mock.patch.object(fused, "applies", lambda h: False)


def gpu_paths(resnet, images, det, loop_det, test, w, b, forward, predict, device) -> Dict:
    """
    On a GPU: the fused kernel against the per-class loop (the same fitted detector), the
    EnergyBased floor, and the ResNet-50 forward in bfloat16 autocast with channels_last; each
    with its time per sample and its peak extra memory (``torch.cuda.max_memory_allocated``).
    """
    batch = test.shape[0]
    h = test.clamp(max=det.clip) if det.clip is not None else test
    uses_kernel = fused.applies(h)
    with per_class_loop():
        loop_memory = predict_memory_mb(loop_det, test, device)
        loop_time = seconds(lambda: loop_det.predict_features(test), 20, device) / batch
        loop_scores = loop_det.predict_features(test)
    scores = det.predict_features(test)
    exact = det.predict_features(test.double())  # float64: the exact per-class loop

    head = torch.nn.Linear(w.shape[1], w.shape[0]).to(device)
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
        energy = EnergyBased(head)
        energy_memory = peak_extra_mb(lambda: energy.predict(test), device)
        energy_time = seconds(lambda: energy.predict(test), 20, device) / batch

        forward_memory = peak_extra_mb(lambda: resnet(images), device)
        channels_last = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
        images_cl = images.contiguous(memory_format=torch.channels_last)

        def bf16_forward():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return channels_last(images_cl)

        bf16 = seconds(bf16_forward, 5, device) / images.shape[0]
        bf16_memory = peak_extra_mb(bf16_forward, device)

    tuned = fused._kernels.get(False, (None, None))[1]
    return {
        "line_uses_fused_kernel": uses_kernel,
        "fused_kernel_config": str(getattr(tuned, "best_config", None)),
        "fused_kernel_config_timings_ms": {
            str(config): timing for config, timing in getattr(tuned, "configs_timings", {}).items()
        },
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "resnet50_forward_extra_memory_mb": forward_memory,
        "resnet50_bf16_channels_last_forward_ms_per_sample": bf16 * 1e3,
        "resnet50_bf16_channels_last_forward_extra_memory_mb": bf16_memory,
        "line_predict_vs_resnet50_bf16_forward": predict / bf16,
        "line_loop_predict_ms_per_sample": loop_time * 1e3,
        "line_loop_predict_extra_memory_mb": loop_memory,
        "line_loop_predict_vs_resnet50_forward": loop_time / forward,
        "line_speedup_over_loop": loop_time / predict,
        "line_vs_loop_max_abs_score_difference": float((scores - loop_scores).abs().max()),
        "line_vs_float64_max_abs_score_difference": float((scores.double() - exact).abs().max()),
        "energy_predict_ms_per_sample": energy_time * 1e3,
        "energy_predict_extra_memory_mb": energy_memory,
    }


def markdown(r: Dict) -> str:
    return "\n".join(
        [
            f"Measured on {r['machine']}; K={r['num_classes']}, D={r['num_features']}, "
            f"batch {r['batch']} ({r['distinct_predicted_classes_in_batch']} distinct predicted "
            "classes).",
            "",
            "| what | measured | target |",
            "| --- | --- | --- |",
            f"| ResNet-50 forward, per sample | {r['resnet50_forward_ms_per_sample']:.1f} ms | |",
            f"| LINe scoring, per sample | {r['line_predict_ms_per_sample']:.3f} ms "
            f"(**{100 * r['line_predict_vs_resnet50_forward']:.2f} %** of the forward) "
            "| at most 2 % |",
            f"| LINe scoring, extra memory (batch) | {r['line_predict_extra_memory_mb']:.0f} MB "
            "| at most 1 GB |",
            f"| LINe fit, {r['line_fit_samples']} features, thresholds included "
            f"| {r['line_fit_seconds']:.1f} s | at most 20 s |",
            f"| LINe fit, streaming statistics per sample | "
            f"{100 * r['line_fit_accumulate_vs_resnet50_forward']:.2f} % of the forward | |",
            f"| pytorch-ood DICE scoring, per sample (B x K x D) "
            f"| {r['dice_predict_ms_per_sample']:.3f} ms, "
            f"{r['dice_predict_extra_memory_mb']:.0f} MB | |",
            f"| literal per-sample LINe (authors' approach) | {r['literal_per_sample_ms']:.1f} ms "
            f"(LINe is {r['line_speedup_over_literal']:.0f}x faster; max score difference "
            f"{r['literal_max_abs_difference']:.1e}) | |",
            "",
        ]
    )


def markdown_cuda(r: Dict) -> str:
    """the GPU table: every path against the float32 and the bfloat16 forward"""
    forward, bf16 = (
        r["resnet50_forward_ms_per_sample"],
        r["resnet50_bf16_channels_last_forward_ms_per_sample"],
    )

    def row(what, ms, memory, target=""):
        return (
            f"| {what} | {ms:.4f} ms | {100 * ms / forward:.2f} % | {100 * ms / bf16:.2f} % "
            f"| {memory:.0f} MB | {target} |"
        )

    line = r["line_predict_ms_per_sample"]
    met = [
        line <= 0.02 * forward,
        line < r["dice_predict_ms_per_sample"],
        r["line_predict_extra_memory_mb"] <= 64,
    ]
    targets = "; ".join(
        f"{name}: {'met' if ok else '**missed**'}"
        for name, ok in zip(("at most 2 %", "faster than DICE", "at most 64 MB"), met)
    )
    tf32 = "TF32 convolutions" if r["cudnn_allow_tf32"] else "no TF32"
    lines = [
        f"`python benchmarks/speed.py --device cuda` on {r['machine']}; K={r['num_classes']}, "
        f"D={r['num_features']}, batch {r['batch']} ({r['distinct_predicted_classes_in_batch']} "
        "distinct predicted classes). Times per sample (best of repeated runs); extra memory: "
        "peak of `torch.cuda.max_memory_allocated` above the allocated memory before the call.",
        "",
        "| what | per sample | of the float32 forward | of the bf16 forward | extra memory "
        "| target |",
        "| --- | --- | --- | --- | --- | --- |",
        row(
            f"ResNet-50 forward, float32 ({tf32})", forward, r["resnet50_forward_extra_memory_mb"]
        ),
        row(
            "ResNet-50 forward, bfloat16 autocast, channels_last",
            bf16,
            r["resnet50_bf16_channels_last_forward_extra_memory_mb"],
        ),
        row(
            "**LINe scoring, fused kernel**",
            line,
            r["line_predict_extra_memory_mb"],
            targets,
        ),
        row(
            "LINe scoring, per-class loop (before)",
            r["line_loop_predict_ms_per_sample"],
            r["line_loop_predict_extra_memory_mb"],
        ),
        row(
            "pytorch-ood DICE (B x K x D)",
            r["dice_predict_ms_per_sample"],
            r["dice_predict_extra_memory_mb"],
        ),
        row(
            "pytorch-ood EnergyBased (floor: one matrix product)",
            r["energy_predict_ms_per_sample"],
            r["energy_predict_extra_memory_mb"],
        ),
        "",
        f"- The fused kernel is {r['line_speedup_over_loop']:.1f}x the speed of the per-class "
        f"loop and {r['line_speedup_over_dice']:.1f}x that of DICE; its first call (autotuning "
        f"included) took {r['line_fused_first_call_seconds']:.1f} s; tile chosen: "
        f"{r['fused_kernel_config']}.",
        f"- Largest score difference, fused kernel against the loop: "
        f"{r['line_vs_loop_max_abs_score_difference']:.1e}; against float64 features (exact "
        f"loop): {r['line_vs_float64_max_abs_score_difference']:.1e}.",
        f"- LINe fit, {r['line_fit_samples']} features, thresholds included: "
        f"{r['line_fit_seconds']:.1f} s; streaming statistics per sample: "
        f"{100 * r['line_fit_accumulate_vs_resnet50_forward']:.2f} % of the float32 forward.",
        f"- Literal per-sample LINe (authors' approach, on the CPU): "
        f"{r['literal_per_sample_ms']:.1f} ms per sample; max score difference "
        f"{r['literal_max_abs_difference']:.1e}.",
        "",
    ]
    if not r["line_uses_fused_kernel"]:
        lines.insert(
            1, "\n**The fused kernel did not apply on this device: both LINe rows are the loop.**"
        )
    return "\n".join(lines)


#: the section of a results file that a new run keeps (records of earlier runs)
EARLIER_RUNS = "## Earlier runs"


def write_keeping_earlier_runs(path: Path, text: str) -> None:
    """write ``text`` to ``path``, keeping the section from :data:`EARLIER_RUNS` on"""
    if path.exists():
        old = path.read_text()
        if EARLIER_RUNS in old:
            text = text.rstrip("\n") + "\n\n" + old[old.index(EARLIER_RUNS) :]
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller smoke run")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return _memory_child(args.memory_child)
    result = run(args.quick, args.device)
    text = markdown_cuda(result) if args.device.startswith("cuda") else markdown(result)
    print(text)
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = "speed" if args.device == "cpu" else "speed_cuda"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        write_keeping_earlier_runs(out / f"{stem}.md", text)


if __name__ == "__main__":
    main()
