"""
Fitting LINe on a stream the size of ImageNet's training set in bounded memory.

Streams ``--samples`` (default 1,281,167) feature vectors of width 2048 with labels of 1000
classes through :meth:`line_plugin.LINe.fit`, in batches of 4096, and measures the growth of the
resident memory (peak ``VmRSS`` during the fit, sampled by a thread, and ``VmHWM`` after resetting
it, minus ``VmRSS`` before) and the time of the streaming pass and of the mask derivation. The
features are cheap to make: a few random base batches, shifted by a different offset each batch.
Writes ``benchmarks/results/fit_scale.json`` and a line of Markdown, ``fit_scale.md``, and exits
with status 1 if the memory grew by more than ``--limit-mb``.

Usage::

    python benchmarks/fit_scale.py                      # the full size, a few minutes
    python benchmarks/fit_scale.py --samples 100000     # a smaller run
"""

import argparse
import json
import math
import platform
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from line_plugin import LINe

IMAGENET_TRAIN = 1_281_167
RESULTS = Path(__file__).parent / "results"


def status_mb(field: str) -> Optional[float]:
    """a memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB; None elsewhere"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """reset ``VmHWM`` to the current RSS (Linux: write 5 to ``/proc/self/clear_refs``)"""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakSampler(threading.Thread):
    """the largest ``VmRSS`` seen, sampled every ``interval`` seconds until stopped"""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, 0.0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, status_mb("VmRSS") or 0.0)
            time.sleep(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, status_mb("VmRSS") or 0.0)
        return self.peak


class FeatureStream:
    """
    ``samples`` features (``batch_size`` x ``features``, float32, in [0, 1) plus an offset) with
    labels, in batches, made from a few random base batches: each batch is a base batch plus its
    own offset, written into one reused buffer, with the base labels rotated by the batch index.
    Keeps the float64 sum of everything it yields, to check the fit against.
    """

    def __init__(self, samples: int, features: int, classes: int, batch_size: int, bases: int = 4):
        g = torch.Generator().manual_seed(0)
        self.samples, self.batch_size, self.classes = samples, batch_size, classes
        self.x = [torch.rand(batch_size, features, generator=g) for _ in range(bases)]
        self.y = [torch.randint(0, classes, (batch_size,), generator=g) for _ in range(bases)]
        self.buffer = torch.empty(batch_size, features)
        self.total = torch.zeros(features, dtype=torch.float64)
        self.exhausted_at: Optional[float] = None

    def __len__(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor]]:
        for i in range(len(self)):
            n = min(self.batch_size, self.samples - i * self.batch_size)
            base = i % len(self.x)
            x = torch.add(self.x[base][:n], 0.5 * (i % 97) / 97, out=self.buffer[:n])
            y = (self.y[base][:n] + i) % self.classes
            self.total += x.sum(dim=0, dtype=torch.float64)
            yield x, y
        self.exhausted_at = time.perf_counter()


def run(samples: int, features: int, classes: int, batch_size: int) -> Dict:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(classes, features, generator=g) / math.sqrt(features)
    b = torch.randn(classes, generator=g) * 0.1
    stream = FeatureStream(samples, features, classes, batch_size)
    det = LINe(nn.Identity(), w, b, p_a=0.1, p_w=0.1, clip=0.8)  # the ImageNet preset

    rss_before = status_mb("VmRSS")
    hwm_reset = reset_peak()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    det.fit(stream, progress=False)
    end = time.perf_counter()
    peak_sampled = sampler.stop()
    hwm = status_mb("VmHWM") if hwm_reset else None
    rss_after = status_mb("VmRSS")

    # the fit saw every sample: counts, and the grand mean recomputed from the class means
    assert int(det.class_counts.sum()) == samples
    grand = (det.class_means * det.class_counts[:, None]).sum(dim=0) / samples
    grand_error = float((grand - stream.total / samples).abs().max())
    assert grand_error < 1e-9, grand_error
    peak = max(peak_sampled, hwm or 0.0)
    return {
        "samples": samples,
        "features": features,
        "classes": classes,
        "batch_size": batch_size,
        "seconds_total": round(end - start, 2),
        "seconds_stream": round(stream.exhausted_at - start, 2),
        "seconds_masks": round(end - stream.exhausted_at, 2),
        "samples_per_second": round(samples / (stream.exhausted_at - start)),
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(peak - rss_before, 1),
        "peak_from": "VmHWM and sampled VmRSS" if hwm else "sampled VmRSS",
        "grand_mean_error": grand_error,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.system()}",
    }


def markdown(r: Dict, limit_mb: float) -> str:
    return (
        f"| fit on {r['samples']:,} x {r['features']} features, K = {r['classes']} "
        f"| {r['seconds_total']:.0f} s ({r['seconds_stream']:.0f} s streaming at "
        f"{r['samples_per_second']:,} samples/s, {r['seconds_masks']:.0f} s masks) "
        f"| resident memory +{r['rss_growth_mb']:.0f} MB (limit {limit_mb:.0f} MB) "
        f"| torch {r['torch']}, {r['threads']} threads |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=IMAGENET_TRAIN)
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--limit-mb", type=float, default=200.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results")
    args = parser.parse_args()
    if status_mb("VmRSS") is None:
        raise SystemExit("needs Linux: memory is read from /proc/self/status")

    result = run(args.samples, args.features, args.classes, args.batch_size)
    result["limit_mb"] = args.limit_mb
    result["within_limit"] = result["rss_growth_mb"] <= args.limit_mb
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fit_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    line = markdown(result, args.limit_mb)
    (args.out / "fit_scale.md").write_text(line + "\n")
    print(json.dumps(result, indent=2))
    print(line)
    if not result["within_limit"]:
        raise SystemExit(f"resident memory grew by {result['rss_growth_mb']} MB")


if __name__ == "__main__":
    main()
