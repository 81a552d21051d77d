"""
What ``preset="auto"`` costs: the wall time of :meth:`line_plugin.LINe.fit` with ``"auto"``
against a plain fit (the paper's ``cifar10`` preset) on the same loader, for each shared
backbone, measured in one run. The issue's limit is 3 times a plain fit.

Each backbone: ``--samples`` training images (class-balanced, JPEG CIFAR-10), a loader of
``--batch-size``, one untimed warm-up batch, then the plain and the auto fit, ``--repeats`` times
alternately; the ratio is that of the fastest of each. ``auto``'s backbone sees 1.2 times the
images of a plain fit here (every 10th image held out and one outlier made from it); from 10,000
images on, at most 1,000 are held out and the share falls.

    python benchmarks/auto_cost.py                          # the five shared backbones
    python benchmarks/auto_cost.py --backbone resnet18 --samples 2000

Writes ``auto_cost.json`` and ``auto_cost.md`` to ``--out``.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from line_plugin import LINe, data, zoo

RESULTS = Path(__file__).resolve().parent / "results"
LIMIT = 3.0


def timed_fit(model, loader: DataLoader, preset: str) -> Dict:
    """:return: the wall time of one fit with ``preset``, and what auto chose"""
    detector = LINe.from_model(model, preset=preset)
    t0 = time.perf_counter()
    detector.fit(loader, progress=False)
    seconds = time.perf_counter() - t0
    choice = getattr(detector, "auto_choice", None)
    return {"seconds": seconds, "chose": choice.name if choice is not None else None}


def measure(name: str, samples: int, batch_size: int, repeats: int) -> Dict:
    loaded = zoo.load_model(name)
    train = data.subset(data.CIFAR10JPEG(split="train", transform=loaded.transform), samples)
    loader = DataLoader(train, batch_size=batch_size, shuffle=False)
    with torch.no_grad():  # warm-up: the first batch pays for allocations and the decoder
        loaded.model(next(iter(loader))[0])
    times = {"cifar10": [], "auto": []}
    chose = None
    for _ in range(repeats):
        for preset in times:
            run = timed_fit(loaded.model, loader, preset)
            times[preset].append(round(run["seconds"], 2))
            chose = run["chose"] or chose
    plain, auto = min(times["cifar10"]), min(times["auto"])
    record = {
        "backbone": name,
        "samples": len(train),
        "plain_s": times["cifar10"],
        "auto_s": times["auto"],
        "ratio": round(auto / plain, 3),
        "auto_chose": chose,
    }
    print(json.dumps(record), flush=True)
    return record


def table(records: List[Dict]) -> str:
    lines = [
        "| backbone | images | plain fit (s) | auto fit (s) | auto / plain | auto chose |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        lines.append(
            f"| {r['backbone']} | {r['samples']} | {min(r['plain_s']):.1f} | "
            f"{min(r['auto_s']):.1f} | {r['ratio']:.2f} | {r['auto_chose']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", nargs="+", default=list(zoo.MODELS))
    p.add_argument("--samples", type=int, default=5000, help="training images per fit")
    p.add_argument("--batch-size", type=int, default=250, help="as line-ood fit's default")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    records = [measure(b, args.samples, args.batch_size, args.repeats) for b in args.backbone]
    command = "python benchmarks/auto_cost.py " + " ".join(argv or sys.argv[1:])
    worst = max(r["ratio"] for r in records)
    payload = {
        "command": command.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f} at the end",
        "limit": LIMIT,
        "worst_ratio": worst,
        "records": records,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auto_cost.json").write_text(json.dumps(payload, indent=1) + "\n")
    text = (
        "# The cost of preset auto: fit time against a plain fit\n\n"
        f"Command: `{payload['command']}` ({payload['machine']}). Wall time of "
        "`LINe.from_model(model, preset=P).fit(loader)` with P `cifar10` (plain) and `auto`, "
        "on the same loader, in one run; the fastest of the repeats.\n\n"
        + table(records)
        + f"\nWorst ratio {worst:.2f} (limit {LIMIT:g}).\n"
    )
    (args.out / "auto_cost.md").write_text(text)
    print(text)
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
