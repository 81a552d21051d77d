"""
OOD detection quality of LINe against pytorch-ood's post-hoc detectors on the local JPEG CIFAR-10
benchmark, for one or more backbones (a thin script over :mod:`line_plugin.evaluation`).

    python benchmarks/quality.py                          # DenseNet-BC-100, default subsets
    python benchmarks/quality.py --backbone all           # every model of line_plugin.zoo
    python benchmarks/quality.py --arch resnet18 --checkpoint my.pt --name my_resnet
    python benchmarks/quality.py --full                   # every image (slow on a CPU)

Writes ``quality_<backbone>.json`` / ``.md``, ``<backbone>_roc.png``, ``<backbone>_scores.png``
and ``quality_summary.md`` (every ``quality_*.json`` in the output folder) to ``--out``.
Features are cached in ``$LINE_OOD_CACHE`` (default ``~/.cache/line_plugin``): a second run
only re-fits and re-scores.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

from line_plugin.evaluation import Sizes, compare_detectors, summary_table, write_report
from line_plugin.zoo import MODELS, load_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backbone",
        nargs="+",
        default=["densenet_bc100"],
        help=f"zoo models, or 'all' ({', '.join(MODELS)})",
    )
    p.add_argument("--arch", help="timm architecture (or densenet_bc100) of --checkpoint")
    p.add_argument("--checkpoint", type=Path, help="checkpoint file to evaluate instead")
    p.add_argument("--name", help="name of the --checkpoint model in the results")
    p.add_argument("--full", action="store_true", help="every image instead of the subsets")
    default = Sizes()
    p.add_argument("--fit", type=int, default=default.fit, help="training images to fit on")
    p.add_argument("--test-id", type=int, default=default.test_id, help="ID test images")
    p.add_argument("--test-ood", type=int, default=default.test_ood, help="images per OOD set")
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--no-tune", action="store_true", help="skip the grid searches")
    p.add_argument("--detectors", nargs="+", help="subset of the detectors")
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="device of the feature extraction")
    p.add_argument("--batch-size", type=int, help="feature extraction batch (CPU default: 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.full:
        sizes = Sizes.full()
    else:
        sizes = Sizes(fit=args.fit, test_id=args.test_id, test_ood=args.test_ood, seed=args.seed)
    if args.checkpoint is not None:
        if not args.arch:
            sys.exit("--checkpoint needs --arch")
        backbones = [load_checkpoint(args.arch, args.checkpoint, name=args.name)]
    else:
        backbones = list(MODELS) if args.backbone == ["all"] else args.backbone
    for backbone in backbones:
        start = time.perf_counter()
        result = compare_detectors(
            backbone,
            sizes,
            detectors=args.detectors,
            tuned=not args.no_tune,
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.quiet,
        )
        files = write_report(result, args.out)
        took = time.perf_counter() - start
        print(f"{result.meta['backbone']}: {took:.0f} s; wrote {', '.join(f.name for f in files)}")
    records = []
    for path in sorted(args.out.glob("quality_*.json")):
        records += json.loads(path.read_text())["records"]
    summary = args.out / "quality_summary.md"
    summary.write_text(
        "# Mean over the OOD sets: FPR95 (papers' convention) / AUROC, in percent\n\n"
        + summary_table(records)
    )
    print(summary.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
