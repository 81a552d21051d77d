"""
Speed and memory of LINe at ImageNet scale (K=1000 classes, D=2048 features, batch 256), as
ratios measured in one run on one machine:

- scoring cost per sample relative to a ResNet-50 forward pass per sample (target: at most 2 %),
  and the extra memory scoring takes (target: at most 1 GB);
- fitting 20,000 features, thresholds included (target: at most 20 s);
- LINe against a literal per-sample transcription of the algorithm (the authors' approach, one
  K x D mask per sample) and against pytorch-ood's DICE, which builds a B x K x D tensor.

Run: ``python benchmarks/speed.py`` (``--quick`` for a smoke run). Writes
``benchmarks/results/speed.json`` and ``speed.md``.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch
import torchvision
from pytorch_ood.detector import DICE

from line_plugin import LINe
from line_plugin.statistics import ClassStatistics

RESULTS = Path(__file__).parent / "results"


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
    """the authors' approach: per sample, the dense K x D masks from the contributions"""
    w = det.weight.numpy()
    b = det.bias.numpy()
    contrib = w * det.class_means.numpy()
    out = []
    for a in x.double().numpy():
        h = np.minimum(a, det.clip)
        label = int(np.argmax(w @ h + b))
        keep = contrib[label] > np.quantile(contrib[label], det.p_a)
        products = np.abs(contrib[label])[None, :] * w
        mask = products > np.quantile(products, det.p_w)
        z = (w * mask) @ (h * keep) + b
        out.append(-np.logaddexp.reduce(z))
    return np.array(out)


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
    stats = ClassStatistics(num_classes, num_features)
    accumulate = seconds(lambda: stats.update(x.to(device), y), 1, device) / fit_samples

    test = features_for(w, torch.randperm(num_classes, generator=g)[:batch], g).to(device)
    logits = test.clamp(max=det.clip) @ det.weight.to(device, torch.float32).T
    distinct = int(torch.unique(logits.argmax(1)).numel())
    # the first call also derives the compute copies of W and the thresholds
    predict_memory = predict_memory_mb(det, test, device)
    predict = seconds(lambda: det.predict_features(test), 3, device) / batch

    dice = DICE(None, w, b, p=0.9).to(device).fit_features(x.to(device), y.to(device))
    dice_memory = predict_memory_mb(dice, test, device)
    dice_time = seconds(lambda: dice.predict_features(test), 1, device) / batch

    few = test[: 4 if quick else 8].cpu()
    cpu_det = LINe(None, w, b, **det.get_hyperparameters()).load_state_dict(det.state_dict())
    literal = seconds(lambda: literal_scores(cpu_det, few), 1) / few.shape[0]
    literal_error = float(
        np.abs(
            literal_scores(cpu_det, few) - det.predict_features(few.double()).cpu().numpy()
        ).max()
    )

    name = torch.cuda.get_device_name(device) if cuda else platform.machine()
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
    text = markdown(result)
    print(text)
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = "speed" if args.device == "cpu" else "speed_cuda"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
