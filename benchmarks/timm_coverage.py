"""
Which timm architectures :func:`line_plugin.adapter.split_model` splits, as new users create them.

Catalogues every architecture of the installed timm (built on the meta device: no weights), groups
them by head configuration (timm module, ``pretrained_cfg['classifier']``, ``global_pool``, the
classifier's layer types, the head's type and hidden layer), and splits the cheapest architecture
of each group exactly as a new user would: ``split_model(timm.create_model(name,
num_classes=10))``, random weights, the default probe. Each split is then checked on a fresh
batch; a zero-initialised head is also given random weights in place and split again, which must
find the same layers and reproduce the new logits.

Results are appended to a JSON-lines file as each model finishes (a rerun resumes where it
stopped); the Markdown table is written at the end.

Usage: ``python benchmarks/timm_coverage.py [--output docs/timm-coverage.md] [--limit N]``
"""

import argparse
import gc
import json
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import timm
import torch
from torch import nn

from line_plugin.adapter import split_model
from line_plugin.adapter.probes import input_shapes
from line_plugin.adapter.zero_heads import random_weights, zero_layers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
COMMAND = "python benchmarks/timm_coverage.py"
NUM_CLASSES = 10
RTOL = 1e-4
# Full-depth models of hundreds of millions of parameters at 546 to 768 pixels would take most of
# the run: these modules are built at depth 2 (their head does not depend on the depth).
SHALLOW = {"deepseek_vit": {"depth": 2}, "gemma4_vit": {"depth": 2}, "qwen3_vit": {"depth": 2}}
# The eight architectures an earlier check refused (issue 10), run whether or not they are the
# cheapest of their configuration: TResNet (a 48-channel probe), VOLO, six zero-initialised heads.
NAMED = [
    "tresnet_m",
    "volo_d1_224",
    "mixer_s32_224",
    "resmlp_12_224",
    "gmixer_12_224",
    "gmlp_ti16_224",
    "sequencer2d_s",
    "hiera_tiny_224",
]


def catalogue(path: Path) -> List[Dict[str, Any]]:
    """Every architecture's head configuration, built on the meta device (cached in ``path``)."""
    done = {r["name"]: r for r in read_jsonl(path) if r.get("timm") == timm.__version__}
    with path.open("a") as out:
        for name in timm.list_models():
            if name not in done:
                done[name] = describe(name)
                out.write(json.dumps(done[name]) + "\n")
                out.flush()
    return [done[name] for name in timm.list_models()]


def describe(name: str) -> Dict[str, Any]:
    """The head configuration and size of one architecture, without its weights."""
    record: Dict[str, Any] = {"name": name, "timm": timm.__version__}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, num_classes=NUM_CLASSES)
    except Exception as err:  # built for real in the run, which reports the error
        record["error"] = f"{type(err).__name__}: {err}"[:300]
        record["module"] = name.split("_")[0]
        return record
    cfg = model.pretrained_cfg
    record["module"] = type(model).__module__.split(".")[-1]
    record["classifier"] = cfg.get("classifier")
    record["input_size"] = list(cfg.get("input_size", ()))
    pool = getattr(model, "global_pool", None)
    if pool is None and isinstance(getattr(model, "head", None), nn.Module):
        pool = getattr(model.head, "global_pool", None)
    if not isinstance(pool, (str, type(None))):
        pool = getattr(pool, "pool_type", type(pool).__name__)
    record["pool"] = pool
    names = record["classifier"]
    struct = []
    for layer in [names] if isinstance(names, str) else list(names or []):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            struct.append([layer, "missing", []])
            continue
        parts = [
            [sub, type(m).__name__]
            for sub, m in module.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)) or "Norm" in type(m).__name__
        ]
        struct.append([layer, type(module).__name__, parts])
    record["struct"] = struct
    head = getattr(model, "head", None)
    record["head_type"] = type(head).__name__ if isinstance(head, nn.Module) else None
    hidden = getattr(model, "head_hidden_size", 0) or 0
    record["hidden"] = int(hidden) != int(getattr(model, "num_features", 0) or 0)
    record["has_classifier"] = hasattr(model, "get_classifier")
    record["params"] = sum(p.numel() for p in model.parameters())
    return record


def signature(record: Dict[str, Any]) -> Tuple:
    """What makes two heads the same configuration."""
    if "error" in record:
        return ("error", record["name"])
    keys = ("module", "classifier", "pool", "struct", "head_type", "hidden", "has_classifier")
    return tuple(json.dumps(record[key]) for key in keys)


def cost(record: Dict[str, Any]) -> float:
    size = record.get("input_size") or [3, 224, 224]
    return record.get("params", 0) * size[-1] * size[-2] / 1e12


def representatives(records: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], List[str]]]:
    """The cheapest architecture of each head configuration, and the architectures it covers."""
    groups: Dict[Tuple, List[Dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[signature(record)].append(record)
    picked = [(min(group, key=cost), [r["name"] for r in group]) for group in groups.values()]
    return sorted(picked, key=lambda pair: cost(pair[0]))


def fresh_batch(model: nn.Module) -> torch.Tensor:
    """A batch of 2 the split never saw, of the first input shape the model accepts."""
    generator = torch.Generator().manual_seed(7)
    for shape in dict.fromkeys(input_shapes(model)):
        x = torch.randn((2, *shape), generator=generator)
        try:
            with torch.no_grad():
                model(x)
        except Exception:
            continue
        return x
    raise ValueError("the model rejects every default input shape")


def check(model: nn.Module, split, x: torch.Tensor) -> float:
    """Relative error of the split's logits on ``x``."""
    with torch.no_grad():
        logits = model(x)
        estimate = split.encoder(x) @ split.weight.T + split.bias
    scale = logits.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    return float((estimate - logits).abs().max() / scale)


def run(name: str) -> Dict[str, Any]:
    """Create, split and check one architecture as a new user would."""
    record: Dict[str, Any] = {"name": name, "timm": timm.__version__}
    start = time.perf_counter()
    try:
        split_and_check(name, record)
    except Exception as err:  # outside split_model's own errors: a crash of the model itself
        record.update(outcome="failed", detail=f"{type(err).__name__}: {err}"[:300])
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def split_and_check(name: str, record: Dict[str, Any]) -> None:
    kwargs = next((v for k, v in SHALLOW.items() if name.startswith(k)), {})
    record["kwargs"] = kwargs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, num_classes=NUM_CLASSES, **kwargs)
    except Exception as err:
        record.update(outcome="failed", detail=f"create_model: {type(err).__name__}: {err}")
        return
    zeros = zero_layers(model.eval(), NUM_CLASSES)
    record["zero_head"] = zeros
    try:
        split = split_model(model)
    except (ValueError, NotImplementedError) as err:
        record.update(outcome="refused", detail=f"{type(err).__name__}: {err}")
    else:
        x = fresh_batch(model)
        record["input"] = list(x.shape[1:])
        error = check(model, split, x)
        record.update(route=split.route, features=split.weight.shape[1], error=error)
        record["outcome"] = "exact" if error <= RTOL else "wrong"
        if zeros and record["outcome"] == "exact":
            # the structure found on zero weights must be the one found on random weights
            with torch.no_grad():
                for key, value in random_weights(model, zeros).items():
                    model.get_parameter(key).copy_(value)
            again = split_model(model)
            record["random_head_error"] = check(model, again, x)
            same = again.encoder.layers == split.encoder.layers
            if not same or record["random_head_error"] > RTOL:
                record["outcome"] = "wrong"
                record["detail"] = f"with random head weights: {again.route}"


def read_jsonl(path: Path) -> Iterator[Dict[str, Any]]:
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdict(result: Dict[str, Any]) -> str:
    if result["outcome"] == "exact":
        text = f"exact ({result['error']:.1e})"
        if result.get("zero_head"):
            text += f"; zero head, random head: exact ({result['random_head_error']:.1e})"
        return text
    return f"{result['outcome']}: {result.get('detail', '')}"


def reason(result: Dict[str, Any]) -> str:
    """A short reason for a refusal, for the summary."""
    detail = result.get("detail", "")
    if "encoder without a classifier" in detail:
        return "encoder without a classifier (no weight to split off)"
    if "no linear head" in detail and "aux_head" in detail:
        return "no linear head: the logits add a max over tokens of aux_head (VOLO)"
    return detail[:200]


def short_route(route: str) -> str:
    """The route with its kind abbreviated, for the table."""
    for long, short in (
        ("timm forward_head(pre_logits=True): ", "timm head API: "),
        ("pretrained_cfg['classifier']: ", "cfg: "),
    ):
        route = route.replace(long, short)
    return route


def report(picked, results: Dict[str, Dict[str, Any]], records, seconds: float) -> str:
    """The Markdown page."""
    named = [results[name] for name in NAMED if name in results]
    rows = [(rep, members, results[rep["name"]]) for rep, members in picked]
    outcomes = Counter(result["outcome"] for _, _, result in rows)
    covered = Counter()
    for _, members, result in rows:
        covered[result["outcome"]] += len(members)
    refusals = Counter(reason(r) for _, _, r in rows if r["outcome"] == "refused")
    zero = [r["name"] for _, _, r in rows if r.get("zero_head")]
    routes = Counter(short_route(r["route"]).split(":")[0] for _, _, r in rows if "route" in r)
    lines = [
        "# timm coverage of `split_model`",
        "",
        f"Reproduce with `{COMMAND}` (writes this file and "
        "`benchmarks/results/timm_coverage.jsonl`; "
        f"{seconds / 60:.0f} min of model time on one CPU thread).",
        "",
        f"timm {timm.__version__}, torch {torch.__version__}. All {len(records)} architectures "
        "of the installed timm were built on the meta device and grouped by head configuration: "
        "timm module, `pretrained_cfg['classifier']` (one name, or several for distilled and "
        "multi-head models), `global_pool` (`avg`, `token`, `map`, `avgmax`, ...), the "
        "classifier's layer types, the head's type, and whether the head has a hidden layer. "
        f"That gives **{len(rows)} head configurations**. The cheapest architecture of each "
        "was created as a new user would, `split_model(timm.create_model(name, "
        "num_classes=10))`: random weights as timm initialises them (zero heads included), "
        "the default probe, no arguments. *exact*: `encoder(x) @ W.T + b` matched `model(x)` "
        f"on a fresh batch of 2 to the relative error shown (limit {RTOL:g}). "
        "A zero-initialised head (its logits are then all zero) was also given random weights "
        "in place and split again: the same layers must come out, and match the new logits. "
        "*refused*: `split_model` raised, with the message shown. Modules built at depth 2 "
        f"(their head does not depend on the depth): {', '.join(sorted(SHALLOW))}.",
        "",
        f"**{outcomes['exact']} exact, {outcomes['refused']} refused, "
        f"{outcomes['wrong']} wrong, {outcomes['failed']} failed** "
        f"(of {len(rows)} configurations; by architecture: {covered['exact']} exact, "
        f"{covered['refused']} refused, {covered['wrong']} wrong, {covered['failed']} failed, "
        f"of {sum(covered.values())}).",
        "",
        "Routes of the exact splits (configurations): "
        + ", ".join(f"{count} x {kind}" for kind, count in routes.most_common())
        + ". *timm head API*: `model.forward_head(model.forward_features(x), pre_logits=True)` "
        "as the features and `model.get_classifier()` as the head, tried first and taken where "
        "the logits are exactly that classifier's output on its input; *cfg*: the layers named "
        "by `pretrained_cfg['classifier']`, mixed into one head; *linear layers*: any linear "
        "layers of the model.",
        "",
        "Refusals, by reason (configurations):",
        "",
        *([f"- {count} x {text}" for text, count in refusals.most_common()] or ["- none"]),
        "",
        f"Zero-initialised heads ({len(zero)}): " + (", ".join(f"`{n}`" for n in zero) or "none"),
        "",
        "The eight architectures an earlier check refused (issue 10), each created and split as "
        "above:",
        "",
        *[
            f"- `{r['name']}`: "
            + (f"refused: {reason(r)}" if r["outcome"] == "refused" else verdict(r))
            for r in named
        ],
        "",
        "| module | model tested | classifier | pool | archs | input | route | D | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rep, members, result in sorted(rows, key=lambda row: (row[0]["module"], row[0]["name"])):
        kwargs = ", ".join(f"{k}={v}" for k, v in result.get("kwargs", {}).items())
        model = f"`{rep['name']}`" + (f" ({kwargs})" if kwargs else "")
        shape = result.get("input")
        route = short_route(result.get("route", ""))
        row = [
            rep["module"],
            model,
            rep.get("classifier", ""),
            rep.get("pool", ""),
            len(members),
            "x".join(map(str, shape)) if shape else "",
            route,
            result.get("features", ""),
            verdict(result),
        ]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "timm-coverage.md")
    parser.add_argument("--results", type=Path, default=RESULTS / "timm_coverage.jsonl")
    parser.add_argument("--catalogue", type=Path, default=RESULTS / "timm_catalogue.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="run at most N new models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records = catalogue(args.catalogue)
    picked = representatives(records)
    results = {r["name"]: r for r in read_jsonl(args.results) if r["timm"] == timm.__version__}
    names = [rep["name"] for rep, _ in picked] + [n for n in NAMED if timm.is_model(n)]
    todo = [name for name in dict.fromkeys(names) if name not in results][: args.limit]
    with args.results.open("a") as out:
        for i, name in enumerate(todo):
            results[name] = run(name)
            out.write(json.dumps(results[name]) + "\n")
            out.flush()
            gc.collect()
            print(f"[{i + 1}/{len(todo)}] {name}: {results[name]['outcome']}", flush=True)
    if all(name in results for name in names):
        seconds = sum(results[name].get("seconds", 0) for name in dict.fromkeys(names))
        args.output.write_text(report(picked, results, records, seconds))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
