"""
Which timm models :func:`line_plugin.adapter.split_model` splits exactly (writes the table).

Runs the sweep of ``tests/timm_zoo.py`` (one model of every timm model module, plus head
variants; random weights, BatchNorm statistics and classifiers randomised) and tabulates, for
each model, the route taken and whether the split reproduced the logits on a fresh batch, was
refused (and why), or was skipped, in ``docs/timm-coverage.md``.

Usage: ``python benchmarks/timm_coverage.py [--output docs/timm-coverage.md]``
"""

import argparse
import sys
import time
from pathlib import Path
from typing import List

import timm
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from timm_zoo import FAMILIES, HEAD_VARIANTS, Result, sweep  # noqa: E402

COMMAND = "python benchmarks/timm_coverage.py"


def table(results: List[Result]) -> List[str]:
    """Markdown rows: family, model, input, route, features, result."""
    rows = [
        "| family (timm module) | model tested | input | route | D | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        case = r.case
        kwargs = ", ".join(f"{k}={v}" for k, v in case.kwargs.items())
        model = f"`{case.model}`" + (f" ({kwargs})" if kwargs else "")
        if r.outcome == "exact":
            verdict = f"exact ({r.detail})"
        else:
            verdict = f"{r.outcome}: {r.detail}"
        route = r.route.replace("pretrained_cfg['classifier']: ", "cfg: ")
        features = str(r.features) if r.features else ""
        row = [case.family, model, f"{case.size} px", route, features, verdict]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return rows


def report(families: List[Result], variants: List[Result], seconds: float) -> str:
    """The whole Markdown page."""
    attempted = [r for r in families if r.outcome != "skipped"]
    exact = [r for r in attempted if r.outcome == "exact"]
    refused = [r for r in families + variants if r.outcome == "refused"]
    skipped = [r for r in families if r.outcome == "skipped"]
    wrong = [r for r in families + variants if r.outcome == "wrong"]

    def names(results: List[Result]) -> str:
        return ", ".join(f"`{r.case.model or r.case.family}`" for r in results) or "none"

    lines = [
        "# timm coverage of `split_model`",
        "",
        f"Reproduce with `{COMMAND}` (writes this file; {seconds:.0f} s here, on one CPU thread).",
        "",
        f"timm {timm.__version__}, torch {torch.__version__}. One model of each of timm's "
        f"{len(FAMILIES)} model modules (the one with the fewest parameters that runs at the "
        "smallest input), then head variants. Random weights (`pretrained=False`, "
        "`num_classes=10`); BatchNorm statistics and every layer with 10 outputs randomised so "
        "that a wrong split cannot pass by accident. *exact*: `encoder(x) @ W.T + b` matched "
        "`model(x)` on a fresh batch of 3 to the relative error shown (limit 1e-4). "
        "*refused*: `split_model` raised, with the message shown. Routes: `cfg` is "
        "`pretrained_cfg['classifier']`; `inputs concatenated` means the features are the "
        "inputs of several classifier layers side by side. The two largest families "
        "(`deepseek_vit`, `gemma4_vit`) are built at `depth=2`: their head does not depend on "
        "the depth.",
        "",
        f"**Families: {len(exact)} exact / {len(attempted)} attempted "
        f"({100 * len(exact) / max(len(attempted), 1):.0f} %)**, "
        f"{len(skipped)} skipped. Refused: {names(refused)}. Skipped: {names(skipped)}. "
        f"Split wrongly: {names(wrong)}.",
        "",
        "## One model per timm module",
        "",
        *table(families),
        "",
        "## Head variants",
        "",
        *table(variants),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "timm-coverage.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    families, variants = sweep(FAMILIES), sweep(HEAD_VARIANTS)
    seconds = time.perf_counter() - start
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(families, variants, seconds))
    attempted = [r for r in families if r.outcome != "skipped"]
    exact = sum(r.outcome == "exact" for r in attempted)
    print(f"{exact} exact / {len(attempted)} attempted; wrote {args.output}")


if __name__ == "__main__":
    main()
