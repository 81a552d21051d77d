"""
Fit time of the upstream module (``line_plugin.core.LINe``, the patch's
``pytorch_ood/detector/line.py``) at ImageNet scale, K = 1000 classes, D = 2048 features: the
streaming pass over N features and the derivation of the masks (exact selection of the weight
thresholds over all K x D products, per class), against the plugin's fast selection (bit for bit
the same thresholds). The plugin derives its masks within its fit too: its streaming time
includes them, and the masks are timed for both by deriving them again from the same means.

.. code-block:: bash

    python benchmarks/upstream_fit.py            # writes benchmarks/results/upstream_fit.{json,md}
"""

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from line_plugin import LINe as PluginLINe
from line_plugin.core import LINe

K, D, N, BATCH = 1000, 2048, 20000, 500
OUT = Path(__file__).parent / "results"


def inputs():
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.normal(0, 0.02, (K, D)).astype(np.float32))
    b = torch.from_numpy(rng.normal(0, 0.1, K).astype(np.float32))
    y = torch.arange(N) % K
    centers = np.maximum(rng.normal(0.3, 0.5, (K, D)), 0).astype(np.float32)
    x = torch.from_numpy(centers)[y] + torch.rand(N, D, generator=torch.Generator().manual_seed(0))
    return w, b, x, y


def timed(cls, w, b, x, y, p_a, p_w):
    det = cls(None, w, b, p_a=p_a, p_w=p_w, clip=1.0)
    t0 = time.perf_counter()
    det.fit_batches(zip(x.split(BATCH), y.split(BATCH)))
    t1 = time.perf_counter()
    det.class_means = det.class_means.clone()  # the masks of these means are derived anew
    threshold = det.weight_threshold
    t2 = time.perf_counter()
    return det, round(t1 - t0, 2), round(t2 - t1, 2), threshold


def main():
    torch.manual_seed(0)
    w, b, x, y = inputs()
    rows = []
    for p_a, p_w in ((0.1, 0.1), (0.9, 0.9)):
        det, stream, masks, threshold = timed(LINe, w, b, x, y, p_a, p_w)
        _, _, fast, fast_threshold = timed(PluginLINe, w, b, x, y, p_a, p_w)
        rows.append(
            {
                "p_a": p_a,
                "p_w": p_w,
                "streaming_s": stream,
                "masks_upstream_s": masks,
                "masks_plugin_s": fast,
                "thresholds_identical": bool(torch.equal(threshold, fast_threshold)),
            }
        )
        print(rows[-1], flush=True)
    result = {
        "K": K,
        "D": D,
        "N": N,
        "batch": BATCH,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
        "command": "python benchmarks/upstream_fit.py",
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "upstream_fit.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fit of the upstream module, K = {K}, D = {D}, N = {N} (batches of {BATCH})",
        "",
        f"`{result['command']}`; torch {torch.__version__}, {result['threads']} threads.",
        "",
        "| p_a | p_w | streaming pass | masks, upstream (exact, all K x D products) "
        "| masks, plugin (fast selection) | same thresholds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['p_a']} | {r['p_w']} | {r['streaming_s']} s | {r['masks_upstream_s']} s "
            f"| {r['masks_plugin_s']} s | {r['thresholds_identical']} |"
        )
    (OUT / "upstream_fit.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
