"""
``line-ood fit`` with the default preset (``auto``) against ``--p-a 0 --p-w 0 --clip none``
(Energy) and ``--preset cifar10`` (the paper's), each followed by ``line-ood score`` on CIFAR-10
test images, MNIST and DTD written as PNG files: the AUROC of CIFAR-10 against each OOD set.
The commands run in-process (``harness.line_ood``), exactly as typed.

    python benchmarks/auto_cli.py                              # vit_tiny and densenet_bc100
    python benchmarks/auto_cli.py --fit-samples 5000 --images 1000
    python benchmarks/auto_cli.py --fit-samples 0 --backbone vit_tiny --settings auto Energy

``--fit-samples 0`` fits on the whole training set with ``line-ood fit``'s own defaults (its
calibration split included), exactly the issue's ``line-ood fit --backbone B --out s.pt``.

Writes ``auto_cli.json`` and ``auto_cli.md`` to ``--out``.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from harness import line_ood, write_png

from line_plugin import data
from line_plugin.evaluation.metrics import metrics

RESULTS = Path(__file__).resolve().parent / "results"

#: the settings compared: label -> extra arguments of ``line-ood fit``
SETTINGS = {
    "auto (default)": [],
    "Energy": ["--p-a", "0", "--p-w", "0", "--clip", "none"],
    "paper cifar10": ["--preset", "cifar10"],
}
SETS = ("cifar10", "mnist", "dtd")


def write_images(folder: Path, n: int, seed: int) -> Dict[str, Path]:
    """``n`` images of the CIFAR-10 test set, MNIST and DTD (class-balanced subsets), as PNG"""
    out = {}
    for name in SETS:
        full = data.CIFAR10JPEG(split="test") if name == "cifar10" else data.ood_set(name)
        dataset = data.subset(full, n, seed=seed)
        write_png(dataset, range(len(dataset)), folder / name)
        out[name] = folder / name
    return out


def run(*args: str) -> str:
    """:return: stdout of ``line-ood ARGS``; exits on an error, with its stderr"""
    code, out, err = line_ood(*args)
    if code:
        sys.exit(f"line-ood {' '.join(args)} failed ({code}): {err.strip()}")
    return out


def fit_arguments(backbone: str, fit_samples: int, batch_size: Optional[int] = None) -> List[str]:
    """:return: ``line-ood fit``'s arguments: a subset without calibration, or the defaults"""
    args = ["fit", "--backbone", backbone]
    if fit_samples:
        args += ["--fit-samples", str(fit_samples), "--calibration", "0"]
    if batch_size:
        args += ["--batch-size", str(batch_size)]
    return args + ["--no-progress", "--format", "json"]


def measure(
    backbone: str,
    folders: Dict[str, Path],
    fit_samples: int,
    work: Path,
    settings: List[str],
    batch_size: Optional[int] = None,
) -> List[Dict]:
    records = []
    for label, extra in SETTINGS.items():
        if label.split()[0] not in settings:
            continue
        state = work / f"{backbone}_{label.split()[0]}.pt"
        t0 = time.perf_counter()
        fit = run(*fit_arguments(backbone, fit_samples, batch_size), "--out", str(state), *extra)
        fit_s = time.perf_counter() - t0
        rows = json.loads(
            run(
                "score",
                "--state",
                str(state),
                "--format",
                "json",
                "--no-progress",
                *(["--batch-size", str(batch_size)] if batch_size else []),
                *map(str, folders.values()),
            )
        )["rows"]
        scores = {name: [] for name in SETS}
        for row in rows:
            scores[Path(row["file"]).parent.name].append(row["score"])
        record = {"backbone": backbone, "setting": label, "fit_s": round(fit_s, 1)}
        summary = json.loads(fit)
        record["hyperparameters"] = summary["hyperparameters"]
        record["auto"] = summary["auto"]
        id_scores = torch.tensor(scores["cifar10"])
        for name in SETS[1:]:
            ood = torch.tensor(scores[name])
            labels = torch.cat([torch.zeros(len(id_scores)), -torch.ones(len(ood))])
            m = metrics(torch.cat([id_scores, ood]), labels)
            record[f"AUROC {name}"] = round(100 * m["AUROC"], 2)
            record[f"FPR95 {name}"] = round(100 * m["FPR95"], 2)
        records.append(record)
        print(json.dumps({k: v for k, v in record.items() if k != "auto"}), flush=True)
    return records


def table(records: List[Dict]) -> str:
    lines = [
        "| backbone | setting | p_a | p_w | clip | AUROC mnist | AUROC dtd | fit s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        hp = r["hyperparameters"]
        clip = "none" if hp["clip"] is None else f"{hp['clip']:.3g}"
        lines.append(
            f"| {r['backbone']} | {r['setting']} | {hp['p_a']:g} | {hp['p_w']:g} | {clip} | "
            f"{r['AUROC mnist']:.1f} | {r['AUROC dtd']:.1f} | {r['fit_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", nargs="+", default=["vit_tiny", "densenet_bc100"])
    p.add_argument(
        "--fit-samples", type=int, default=2000, help="line-ood fit --fit-samples (0: all)"
    )
    p.add_argument("--images", type=int, default=500, help="images per scored set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="line-ood's --batch-size (default: its own; 16 is faster on a CPU)",
    )
    p.add_argument(
        "--settings",
        nargs="+",
        default=[label.split()[0] for label in SETTINGS],
        choices=[label.split()[0] for label in SETTINGS],
        help="the settings to run (first word of each)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = write_images(Path(tmp) / "images", args.images, args.seed)
        for backbone in args.backbone:
            records += measure(
                backbone, folders, args.fit_samples, Path(tmp), args.settings, args.batch_size
            )
    command = "python benchmarks/auto_cli.py " + " ".join(argv or sys.argv[1:])
    payload = {"command": command.strip(), "args": {k: str(v) for k, v in vars(args).items()}}
    payload["records"] = records
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auto_cli.json").write_text(json.dumps(payload, indent=1) + "\n")
    fitted = " ".join(fit_arguments("B", args.fit_samples, args.batch_size)[1:-3])
    text = (
        "# line-ood fit (auto, the default) vs Energy vs the paper preset, scored by line-ood "
        f"score\n\nCommand: `{payload['command']}`. Each setting: `line-ood fit {fitted} "
        "--out s.pt [setting]`, then `line-ood score` "
        f"on {args.images} CIFAR-10 test images, {args.images} MNIST and {args.images} DTD "
        "images (PNG files); AUROC (percent) of CIFAR-10 against each.\n\n" + table(records)
    )
    for r in records:
        if r["auto"]:
            text += f"\n- {r['backbone']}: {r['auto']['summary']}\n"
    (args.out / "auto_cli.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
