"""
``line-ood benchmark``: LINe against pytorch-ood's post-hoc detectors on the local CIFAR-10
benchmark (:func:`line_plugin.evaluation.compare_detectors`), printed as AUROC and FPR95 tables.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, TextIO

from ..catalog import OOD_SETS
from . import common

EXAMPLES = """examples:
  line-ood benchmark                                  # DenseNet-BC-100, all detectors
  line-ood benchmark --backbone resnet18 --detectors Energy LINe
  line-ood benchmark --backbone resnet18:my_resnet18.pt --fit-samples 5000
  line-ood benchmark --tune --ablation --report results/   # tables, JSON and plots

Features are cached ($LINE_OOD_CACHE or ~/.cache/line_plugin): a second run with the same
backbone and sizes takes seconds."""


def run(args: argparse.Namespace) -> int:
    """``line-ood benchmark``: print AUROC and FPR95 tables of the detectors."""
    from ..evaluation import check_detector_names
    from ..pipeline.backbone import load_zoo_model

    data_dir = common.data_root(args.data)
    _check_writable_dir(args.report)
    if args.detectors is not None:  # before the model is loaded
        check_detector_names(args.detectors)
    model = load_zoo_model(args.backbone, args.models)
    if ":" in model.name:  # the name makes report file names: ARCH-FILESTEM, no path
        arch, _, path = model.name.partition(":")
        model.name = f"{arch}-{Path(path).stem}"
    result = run_comparison(model, data_dir, args)
    print_benchmark(result, sys.stdout)
    if args.report:
        from ..evaluation import write_report

        for path in write_report(result, args.report):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def run_comparison(model, data_dir: Path, args: argparse.Namespace):
    """
    :func:`line_plugin.evaluation.compare_detectors` at the sizes and with the detectors of the
    arguments.

    :return: its :class:`~line_plugin.evaluation.ComparisonResult`
    """
    from ..evaluation import Sizes, compare_detectors

    # without tuning, the validation split is not used: keep it tiny
    val = args.val_samples if args.tune else 20
    sizes = Sizes(
        fit=args.fit_samples,
        val_id=val,
        val_ood=val,
        test_id=args.test_samples,
        test_ood=args.ood_samples,
        seed=args.seed,
    )
    return compare_detectors(
        model,
        sizes=sizes,
        detectors=args.detectors,
        tuned=args.tune,
        ablation=args.ablation,
        ood=args.ood,
        data_dir=data_dir,
        features_dir=args.cache,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=common.show_progress(args),
    )


_METRIC_TITLES = {
    "AUROC": "AUROC % (higher is better)",
    "FPR95": "FPR95 % (OOD accepted when 95 % of ID is kept; lower is better)",
}


def print_metric_table(
    records: List[Dict], metric: str, out: TextIO, notes: Optional[Dict[str, str]] = None
) -> None:
    """
    Print the title of ``metric`` and its table (:func:`line_plugin.evaluation.results_table`
    in plain text, the best value of each column marked with ``*``).

    :param records: benchmark records (``detector``, ``dataset`` and the metric)
    :param metric: ``"AUROC"`` or ``"FPR95"``
    :param out: stream to print to
    :param notes: detector -> footnote: their rows are marked ``[1]``, ``[2]``, ...
    """
    from ..evaluation import results_table

    print(f"\n{_METRIC_TITLES.get(metric, metric)}", file=out)
    out.write(results_table(records, (metric,), markdown=False, mark_best=True, notes=notes))


def print_benchmark(result, out: TextIO) -> None:
    """
    Print a header line, the AUROC and FPR95 tables (rows whose default setting is known to
    collapse on the backbone marked, with footnotes pointing to the tuned rows), those of the
    ablation if it ran, and the time taken.

    :param result: a :class:`line_plugin.evaluation.ComparisonResult`
    :param out: stream to print to
    """
    from ..evaluation.collapses import collapse_notes
    from ..evaluation.report import footnotes

    meta = result.meta
    accuracy = meta.get("test_accuracy")
    head = f"{meta.get('backbone', '?')} on JPEG CIFAR-10"
    if accuracy is not None:
        head += f" (test accuracy {100 * accuracy:.1f} %)"
    counts = ", ".join(f"{k} {v}" for k, v in meta.get("n", {}).items() if not k.startswith("val"))
    print(head + (f"; images: {counts}" if counts else ""), file=out)
    rows = list(dict.fromkeys(r["detector"] for r in result.records))
    notes = collapse_notes(str(meta.get("backbone")), rows)
    print_metric_table(result.records, "AUROC", out, notes)
    print_metric_table(result.records, "FPR95", out, notes)
    if notes:
        out.write("\n" + footnotes(notes, markdown=False))
    if result.ablation:
        print("\nLINe ablation: clip 1.0, p_a 0.9, p_w 0.9 on or off", file=out)
        print_metric_table(result.ablation, "AUROC", out)
        print_metric_table(result.ablation, "FPR95", out)
    seconds = meta.get("timings_s", {}).get("total")
    if seconds is not None:
        print(f"\n{seconds:.0f} s (features are cached: a second run is faster)", file=out)


def _check_writable_dir(path: Optional[str]) -> None:
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise FileExistsError(f"--report {path!r} is a file, not a folder")


def add_parser(sub) -> None:
    """add ``benchmark`` to the sub-command parsers ``sub``"""
    p = common.add_command(
        sub,
        "benchmark",
        help="LINe against pytorch-ood's detectors on the local CIFAR-10 benchmark",
        description="Fit LINe (CIFAR-10 preset) and pytorch-ood's post-hoc detectors on the "
        "features of a training subset and print their AUROC and FPR95 on the JPEG CIFAR-10 "
        "test set against each OOD set.",
        epilog=EXAMPLES,
        parents=[common.common_options(common.DEFAULT_BACKBONE)],
    )
    common.data_option(p)
    p.add_argument(
        "--fit-samples",
        type=common.count,
        default=2000,
        metavar="N",
        help="fit images (default: 2000)",
    )
    p.add_argument(
        "--test-samples",
        type=common.count,
        default=1000,
        metavar="N",
        help="ID images (default: 1000)",
    )
    p.add_argument(
        "--ood-samples",
        type=common.count,
        default=500,
        metavar="N",
        help="per OOD set (default: 500)",
    )
    p.add_argument(
        "--ood",
        nargs="+",
        choices=list(OOD_SETS),
        default=list(OOD_SETS),
        metavar="SET",
        help=f"OOD sets (default: all of {', '.join(OOD_SETS)})",
    )
    p.add_argument(
        "--detectors",
        nargs="+",
        metavar="NAME",
        help="detectors, e.g. Energy LINe (default: all: MSP, Energy, ReAct, DICE, ASH, SCALE, "
        "ViM, KNN, Mahalanobis, LINe)",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="add tuned copies (GridSearch on a held-out validation split)",
    )
    p.add_argument(
        "--val-samples",
        type=int,
        default=500,
        metavar="N",
        help="with --tune: ID and synthetic OOD validation images, each (default: 500)",
    )
    p.add_argument("--ablation", action="store_true", help="also print LINe's ablation")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets (default: 0)")
    p.add_argument(
        "--cache", metavar="DIR", help="feature cache (default: $LINE_OOD_CACHE/features)"
    )
    p.add_argument("--report", metavar="DIR", help="also write JSON, Markdown and PNG plots here")
    p.set_defaults(func=run)
