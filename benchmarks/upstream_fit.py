"""
Fit time of the upstream module (``line_plugin.core.LINe``, the patch's
``pytorch_ood/detector/line.py``) at ImageNet scale, K = 1000 classes, D = 2048 features, N =
20,000 float32 features: ``fit_features`` (class means, then the masks, derived in the fit) plus
the first ``predict_features`` of 256 samples, against the same for the plugin
(``line_plugin.LINe``: the module with its input checks, activation sample and host-side class
means). Both are timed in one run, alternately, three times each (the fastest counts), and
must give the same thresholds bit for bit.

.. code-block:: bash

    python benchmarks/upstream_fit.py      # writes benchmarks/results/upstream_fit.{json,md}
"""

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from line_plugin import LINe as PluginLINe
from line_plugin.core import LINe

K, D, N, BATCH, REPEATS = 1000, 2048, 20000, 256, 3
SETTINGS = [(0.1, 0.1, 0.8), (0.9, 0.9, 1.0)]  # the paper's ImageNet and CIFAR-10 settings
OUT = Path(__file__).parent / "results"


def inputs():
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.normal(0, 0.02, (K, D)).astype(np.float32))
    b = torch.from_numpy(rng.normal(0, 0.1, K).astype(np.float32))
    y = torch.arange(N) % K
    centers = np.maximum(rng.normal(0.3, 0.5, (K, D)), 0).astype(np.float32)
    x = torch.from_numpy(centers)[y] + torch.rand(N, D, generator=torch.Generator().manual_seed(0))
    # a test batch that predicts 256 different classes: as many masked matrices as can be
    predicted = torch.arange(BATCH) * 3 % K
    noise = torch.rand(BATCH, D, generator=torch.Generator().manual_seed(1))
    test = noise + 4 * torch.relu(w[predicted]) / w.abs().mean()
    return w, b, x, y, test


def timed(cls, w, b, x, y, test, p_a, p_w, clip):
    """:return: the detector, the seconds of its fit and of its first prediction"""
    det = cls(None, w, b, p_a=p_a, p_w=p_w, clip=clip)
    t0 = time.perf_counter()
    det.fit_features(x, y)
    t1 = time.perf_counter()
    det.predict_features(test)
    return det, t1 - t0, time.perf_counter() - t1


def main():
    torch.manual_seed(0)
    w, b, x, y, test = inputs()
    rows = []
    for p_a, p_w, clip in SETTINGS:
        best = {"module": (np.inf, np.inf), "plugin": (np.inf, np.inf)}
        same = True
        for _ in range(REPEATS):
            module, *m = timed(LINe, w, b, x, y, test, p_a, p_w, clip)
            plugin, *p = timed(PluginLINe, w, b, x, y, test, p_a, p_w, clip)
            best["module"] = min(best["module"], tuple(m), key=sum)
            best["plugin"] = min(best["plugin"], tuple(p), key=sum)
            same &= torch.equal(module.weight_threshold, plugin.weight_threshold)
            same &= torch.equal(module.activation_keep, plugin.activation_keep)
            same &= torch.equal(module.predict_features(test), plugin.predict_features(test))
        total = {name: sum(best[name]) for name in best}
        rows.append(
            {
                "p_a": p_a,
                "p_w": p_w,
                "clip": clip,
                "module_fit_s": round(best["module"][0], 2),
                "module_first_predict_s": round(best["module"][1], 3),
                "plugin_fit_s": round(best["plugin"][0], 2),
                "plugin_first_predict_s": round(best["plugin"][1], 3),
                "ratio": round(total["module"] / total["plugin"], 2),
                "same_masks_and_scores": bool(same),
            }
        )
        print(rows[-1], flush=True)
    result = {
        "K": K,
        "D": D,
        "N": N,
        "batch": BATCH,
        "repeats": REPEATS,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
        "command": "python benchmarks/upstream_fit.py",
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "upstream_fit.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fit of the upstream module, K = {K}, D = {D}, N = {N} float32 features",
        "",
        f"`{result['command']}`; torch {torch.__version__}, {result['threads']} threads; "
        f"`fit_features` then the first `predict_features` of {BATCH} samples, the fastest of "
        f"{REPEATS} alternating runs each.",
        "",
        "| p_a | p_w | clip | module: fit + first predict | plugin: fit + first predict "
        "| module / plugin | same masks and scores |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['p_a']} | {r['p_w']} | {r['clip']} "
            f"| {r['module_fit_s']} s + {r['module_first_predict_s']} s "
            f"| {r['plugin_fit_s']} s + {r['plugin_first_predict_s']} s "
            f"| {r['ratio']} | {r['same_masks_and_scores']} |"
        )
    (OUT / "upstream_fit.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
