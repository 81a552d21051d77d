"""
What clipping and the masks do on backbones whose penultimate features are not post-ReLU.

LINe was designed for post-ReLU CNN features (DenseNet, ResNet); the class token of a ViT and the
pooled, normalised features of ConvNeXt can be negative, and an absolute clip of 1.0 means
something else on every backbone. For each shared model this measures, on the same cached features
as ``benchmarks/quality.py``: the share of negative activations and the activation quantiles; LINe
with clipping and masks switched on and off, with the paper's absolute clip and with a clip fitted
as a quantile of the ID activations (``clip_quantile``); and the configuration selected on the
validation split alone (held-out training images against noise and tile-shuffled images).

Run: ``python benchmarks/non_relu.py`` (every shared model; ``--backbone NAME ...`` for some).
Writes ``benchmarks/results/non_relu.json`` and ``non_relu.md``.
"""

import argparse
import itertools
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from torch import nn

from line_plugin import LINe
from line_plugin.evaluation import CIFAR10Benchmark, Sizes, metrics, predict
from line_plugin.evaluation.runner import _evaluate, _extract
from line_plugin.zoo import load_model

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (p_a, p_w, clip, clip_quantile)
CONFIGS = {
    "Energy (all off)": (0.0, 0.0, None, None),
    "clip 1.0 only (ReAct at 1.0)": (0.0, 0.0, 1.0, None),
    "clip q0.95 only": (0.0, 0.0, None, 0.95),
    "masks only (0.9, 0.9)": (0.9, 0.9, None, None),
    "paper preset (0.9, 0.9, clip 1.0)": (0.9, 0.9, 1.0, None),
    "masks (0.9, 0.9) + clip q0.90": (0.9, 0.9, None, 0.90),
    "masks (0.9, 0.9) + clip q0.95": (0.9, 0.9, None, 0.95),
    "masks (0.9, 0.9) + clip q0.99": (0.9, 0.9, None, 0.99),
    "weight mask only (0, 0.9) + clip q0.95": (0.0, 0.9, None, 0.95),
    "masks (0.5, 0.5) + clip q0.95": (0.5, 0.5, None, 0.95),
}
SEARCH = {
    "p_a": [0.0, 0.5, 0.9],
    "p_w": [0.0, 0.5, 0.9],
    "clip_quantile": [None, 0.9, 0.95, 0.99],
}


def detector(w, b, p_a, p_w, clip, clip_quantile) -> LINe:
    return LINe(nn.Identity(), w, b, p_a=p_a, p_w=p_w, clip=clip, clip_quantile=clip_quantile)


def study(name: str, sizes: Sizes) -> Dict:
    zoo = load_model(name)
    images = CIFAR10Benchmark(zoo.transform, sizes)
    # the comparison runner's own extraction (the same cached features) and evaluation
    features = _extract(zoo, images, None, 16, 0, "cpu", True)
    w, b = features.w, features.b
    z_fit, y_fit = features.fit

    def test_metrics(det: LINe) -> Dict[str, float]:
        per_set, _ = _evaluate(features, "", det, name)
        return {m: float(np.mean([r[m] for r in per_set])) for m in ("AUROC", "FPR95")}

    def validation_auroc(det: LINe) -> float:
        return metrics(predict(det, features.val[0]), features.val[1])["AUROC"]

    rows: List[Dict] = []
    for label, params in CONFIGS.items():
        det = detector(w, b, *params).fit_features(z_fit, y_fit)
        rows.append({"config": label, "clip": det.clip, **test_metrics(det)})

    best: Optional[Dict] = None
    for p_a, p_w, q in itertools.product(*SEARCH.values()):
        det = detector(w, b, p_a, p_w, None, q).fit_features(z_fit, y_fit)
        score = validation_auroc(det)
        if best is None or score > best["val_AUROC"]:
            best = {"p_a": p_a, "p_w": p_w, "clip_quantile": q, "clip": det.clip}
            best["val_AUROC"] = score
    chosen = detector(w, b, best["p_a"], best["p_w"], None, best["clip_quantile"])
    chosen.fit_features(z_fit, y_fit)
    label = "selected on validation: p_a {p_a}, p_w {p_w}, clip q {clip_quantile}".format(**best)
    rows.append({"config": label, "clip": chosen.clip, **test_metrics(chosen)})

    flat = z_fit.flatten().double().numpy()
    return {
        "backbone": name,
        "num_features": int(w.shape[1]),
        "negative_share": float((flat < 0).mean()),
        "activation_quantiles": {
            str(q): float(np.quantile(flat, q)) for q in (0.01, 0.5, 0.9, 0.95, 0.99)
        },
        "selected": best,
        "rows": rows,
    }


def markdown(results: List[Dict], sizes: Sizes) -> str:
    lines = [
        "# Clipping and masks on non-ReLU backbones",
        "",
        "Command: `python benchmarks/non_relu.py`. Mean over the OOD test sets (DTD, ImageNet "
        "sample, MNIST, Fashion-MNIST) against the JPEG CIFAR-10 test set; "
        f"fit on {sizes.fit} training images, {sizes.test_id} ID test images, at most "
        f"{sizes.test_ood} per OOD set. FPR95: share of OOD accepted at 95 % of ID kept (the "
        "papers' convention). All rows but the last are measured on the test sets, to show "
        "what each part does; the last row is chosen on the validation split only.",
        "",
    ]
    for r in results:
        q = r["activation_quantiles"]
        lines += [
            f"## {r['backbone']} (D = {r['num_features']})",
            "",
            f"Negative activations: {100 * r['negative_share']:.1f} %; activation quantiles "
            f"1 % / 50 % / 90 % / 99 %: {q['0.01']:.2f} / {q['0.5']:.2f} / {q['0.9']:.2f} / "
            f"{q['0.99']:.2f}.",
            "",
            "| LINe configuration | clip used | AUROC % | FPR95 % |",
            "| --- | --- | --- | --- |",
        ]
        for row in r["rows"]:
            clip = "none" if row["clip"] is None else f"{row['clip']:.2f}"
            lines.append(
                f"| {row['config']} | {clip} | {100 * row['AUROC']:.1f} | "
                f"{100 * row['FPR95']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbone",
        nargs="+",
        default=["densenet_bc100", "resnet18", "vit_tiny", "convnext_atto"],
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = Sizes()
    results = [study(name, sizes) for name in args.backbone]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "non_relu.json").write_text(json.dumps(results, indent=1) + "\n")
    text = markdown(results, sizes)
    (args.out / "non_relu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
