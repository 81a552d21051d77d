"""
The result of a comparison (:class:`ComparisonResult`) and its rendering: the one table of results
(:func:`results_table`), the summary over backbones, PNG plots and the report files.
"""

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .collapses import collapse_notes


@dataclass
class ComparisonResult:
    """
    Outcome of :func:`~line_plugin.evaluation.compare_detectors`.

    :param records: one dict per detector and OOD set: ``backbone``, ``detector``, ``dataset``,
        ``AUROC``, ``AUPR-IN``, ``AUPR-OUT``, ``FPR95TPR`` (pytorch-ood) and ``FPR95`` (papers)
    :param ablation: the same for LINe with clipping / activation / weight pruning on and off
    :param scores: ``detector -> {"ID": scores, dataset: scores}`` on the test sets
    :param meta: backbone, sizes, accuracy, tuned hyperparameters, timings
    """

    records: List[Dict] = field(default_factory=list)
    ablation: List[Dict] = field(default_factory=list)
    scores: Dict[str, Dict[str, Tensor]] = field(default_factory=dict)
    meta: Dict = field(default_factory=dict)

    def to_json(self) -> str:
        """:return: records, ablation and meta as JSON (no scores)"""
        return json.dumps(
            {"meta": self.meta, "records": self.records, "ablation": self.ablation}, indent=1
        )


def _mean_by(records: List[Dict], key: str, metric: str) -> Dict[Tuple[str, str], float]:
    groups: Dict[Tuple[str, str], List[float]] = {}
    for r in records:
        groups.setdefault((r[key], r["detector"]), []).append(r[metric])
    return {k: float(np.mean(v)) for k, v in groups.items()}


#: metrics where a higher value is better (the others: lower)
HIGHER_IS_BETTER = ("AUROC", "AUPR-IN", "AUPR-OUT")


def results_table(
    records: List[Dict],
    metrics: Sequence[str] = ("FPR95", "AUROC"),
    markdown: bool = True,
    mark_best: bool = False,
    notes: Optional[Dict[str, str]] = None,
) -> str:
    """
    The one table of results: one row per detector, one column per OOD set and their mean; each
    cell holds ``metrics`` in percent with one decimal, joined by ``" / "`` (e.g.
    ``FPR95 / AUROC``).

    :param records: records of one backbone (``detector``, ``dataset`` and the metrics)
    :param metrics: metric names
    :param markdown: a Markdown table; else plain text in aligned columns
    :param mark_best: mark the best value of each column with ``*`` (the highest for
        :data:`HIGHER_IS_BETTER`, else the lowest; ties after rounding all marked); only for one
        metric
    :param notes: detector -> footnote (e.g. from
        :func:`~line_plugin.evaluation.collapses.collapse_notes`): their rows are marked ``[1]``,
        ``[2]``, ... in the order of ``notes``; render the notes with :func:`footnotes`
    :return: the table, one line per row, ending with a newline
    :raises ValueError: for no records, a metric missing in them, or ``mark_best`` with several
        metrics
    """
    if not records:
        raise ValueError("no records to tabulate")
    missing = [m for m in metrics if any(m not in r for r in records)]
    if missing:
        raise ValueError(f"metrics {missing} missing in the records")
    if mark_best and len(metrics) != 1:
        raise ValueError(f"mark_best needs one metric, got {list(metrics)}")
    detectors = list(dict.fromkeys(r["detector"] for r in records))
    columns = list(dict.fromkeys(r["dataset"] for r in records))
    values = {(r["detector"], r["dataset"]): [100 * r[m] for m in metrics] for r in records}
    for det in detectors:
        rows = [values[(det, ds)] for ds in columns if (det, ds) in values]
        values[(det, "mean")] = [float(v) for v in np.mean(rows, axis=0)]
    columns.append("mean")
    cells = {key: [round(v, 1) for v in vals] for key, vals in values.items()}
    best = {}
    if mark_best:
        pick = max if metrics[0] in HIGHER_IS_BETTER else min
        best = {c: pick(cells[(d, c)][0] for d in detectors if (d, c) in cells) for c in columns}

    def text(det: str, column: str) -> str:
        if (det, column) not in cells:
            return ""
        out = " / ".join(f"{v:.1f}" for v in cells[(det, column)])
        if mark_best:
            out += "*" if cells[(det, column)][0] == best[column] else " "
        return out

    marks = {d: f"{d} [{i}]" for i, d in enumerate(notes or {}, start=1)}
    table = [["detector"] + columns]
    table += [[marks.get(d, d)] + [text(d, c) for c in columns] for d in detectors]
    if markdown:
        lines = ["| " + " | ".join(table[0]) + " |", "|" + " --- |" * len(table[0])]
        lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
        return "\n".join(lines) + "\n"
    width = max(len(row[0]) for row in table)
    widths = [max(len(row[i]) for row in table) for i in range(1, len(table[0]))]
    lines = []
    for row in table:
        line = f"{row[0]:<{width}}" + "".join(f"  {t:>{w}}" for t, w in zip(row[1:], widths))
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def summary_table(records: List[Dict], metrics: Sequence[str] = ("FPR95", "AUROC")) -> str:
    """
    Mean over the OOD sets: one row per detector, one column per backbone.

    :param records: records of any number of backbones
    :param metrics: metric names
    :return: the Markdown table
    """
    backbones = list(dict.fromkeys(r["backbone"] for r in records))
    detectors = list(dict.fromkeys(r["detector"] for r in records))
    means = {m: _mean_by(records, "backbone", m) for m in metrics}
    lines = [
        "| detector | " + " | ".join(backbones) + " |",
        "| --- |" + " --- |" * len(backbones),
    ]
    for det in detectors:
        row = [det]
        for bb in backbones:
            vals = [means[m].get((bb, det)) for m in metrics]
            row.append("" if None in vals else " / ".join(f"{100 * v:.1f}" for v in vals))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _roc(id_scores: Tensor, ood_scores: Tensor) -> Tuple[np.ndarray, np.ndarray]:
    # OOD positive: x = share of ID flagged, y = share of OOD caught, over all thresholds
    s = torch.cat([id_scores, ood_scores]).double()
    is_ood = torch.cat([torch.zeros(len(id_scores)), torch.ones(len(ood_scores))])
    order = torch.argsort(s, descending=True)
    tp = torch.cumsum(is_ood[order], 0) / len(ood_scores)
    fp = torch.cumsum(1 - is_ood[order], 0) / len(id_scores)
    return np.r_[0, fp.numpy()], np.r_[0, tp.numpy()]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error without matplotlib"""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the plots need matplotlib: pip install 'line-plugin[bench]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(scores: Dict[str, Dict[str, Tensor]], path: Path, title: str = "") -> Path:
    """
    ROC curves, one panel per OOD set, one curve per detector.

    :param scores: ``detector -> {"ID": scores, dataset: scores}``
    :param path: PNG file to write
    :param title: figure title
    :return: ``path``
    :raises ImportError: without matplotlib (the ``bench`` extra)
    """
    plt = _pyplot()

    datasets = [k for k in next(iter(scores.values())) if k != "ID"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for det, s in scores.items():
            x, y = _roc(s["ID"], s[ds])
            ax.plot(x, y, lw=1.2 if "LINe" in det else 0.8, label=det)
        ax.plot([0, 1], [0, 1], "k:", lw=0.5)
        ax.axvline(0.05, color="grey", lw=0.5)
        ax.set(title=ds, xlabel="ID flagged as OOD", ylabel="OOD detected", xlim=(0, 1))
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histograms(scores: Dict[str, Dict[str, Tensor]], path: Path, title: str = "") -> Path:
    """
    Histograms of ID and OOD outlier scores: one row per detector, one column per OOD set.

    :param scores: ``detector -> {"ID": scores, dataset: scores}``
    :param path: PNG file to write
    :param title: figure title
    :return: ``path``
    :raises ImportError: without matplotlib (the ``bench`` extra)
    """
    plt = _pyplot()

    detectors = list(scores)
    datasets = [k for k in scores[detectors[0]] if k != "ID"]
    fig, axes = plt.subplots(
        len(detectors),
        len(datasets),
        figsize=(3 * len(datasets), 1.8 * len(detectors)),
        squeeze=False,
    )
    for i, det in enumerate(detectors):
        id_s = scores[det]["ID"].numpy()
        for j, ds in enumerate(datasets):
            ood_s = scores[det][ds].numpy()
            lo, hi = np.percentile(np.r_[id_s, ood_s], [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 50)
            ax = axes[i][j]
            ax.hist(id_s, bins, alpha=0.6, density=True, label="ID (CIFAR-10)")
            ax.hist(ood_s, bins, alpha=0.6, density=True, label="OOD")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(ds, fontsize=9)
            if j == 0:
                ax.set_ylabel(det, fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{title} outlier scores (higher: more OOD)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


#: detectors shown in the plots (all are in the tables)
PLOT_DETECTORS = (
    "MSP",
    "Energy",
    "ReAct",
    "DICE",
    "ASH",
    "ViM",
    "KNN",
    "LINe (paper)",
    "LINe (tuned)",
    "LINe (auto)",
)


def footnotes(notes: Dict[str, str], markdown: bool = True) -> str:
    """
    :param notes: detector -> footnote, as given to :func:`results_table`
    :param markdown: one paragraph per note; else plain text wrapped at 99 columns
    :return: ``[1] note``, ``[2] note``, ... ending with a newline; empty without notes
    """
    lines = [f"[{i}] {note}" for i, note in enumerate(notes.values(), start=1)]
    if not markdown:
        lines = [textwrap.fill(line, 99, subsequent_indent="    ") for line in lines]
    return ("\n\n" if markdown else "\n").join(lines) + "\n" if lines else ""


def write_report(result: ComparisonResult, out_dir: Union[str, Path]) -> List[Path]:
    """
    Write ``quality_<backbone>.json`` (records, ablation, meta), ``quality_<backbone>.md`` (tables)
    and the PNG plots ``<backbone>_roc.png``, ``<backbone>_scores.png``.

    :param result: a :func:`~line_plugin.evaluation.compare_detectors` result
    :param out_dir: output folder (created)
    :return: the files written
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = result.meta["backbone"]
    written = [out / f"quality_{name}.json"]
    written[0].write_text(result.to_json() + "\n")
    meta = result.meta
    notes = collapse_notes(name, list(dict.fromkeys(r["detector"] for r in result.records)))
    text = [
        f"# {name}: OOD detection on JPEG CIFAR-10\n",
        "Cells: FPR95 (papers' convention: OOD accepted when 95 % of ID is kept; lower is better)"
        " / AUROC (higher is better), in percent.\n",
        f"Test accuracy {100 * meta['test_accuracy']:.1f} %. Images: "
        + ", ".join(f"{k} {v}" for k, v in meta["n"].items())
        + f". Validation split for tuning: {meta.get('validation', '')}.\n",
        results_table(result.records, notes=notes),
    ]
    if notes:
        text.append(footnotes(notes))
    if meta.get("tuned"):
        text.append("\nTuned hyperparameters (GridSearch, validation AUROC):\n")
        for det, t in meta["tuned"].items():
            text.append(f"- {det}: {t['params']} ({100 * t['val_AUROC']:.1f})")
        text.append("")
    if meta.get("auto"):
        text.append(f"LINe (auto): {meta['auto']['summary']}\n")
    if result.ablation:
        text += [
            "\n## LINe ablation (clip 1.0, p_a 0.9, p_w 0.9)\n",
            results_table(result.ablation),
        ]
    written.append(out / f"quality_{name}.md")
    written[-1].write_text("\n".join(text))
    shown = {k: v for k, v in result.scores.items() if k in PLOT_DETECTORS} or result.scores
    written.append(plot_roc(shown, out / f"{name}_roc.png", name))
    written.append(plot_histograms(shown, out / f"{name}_scores.png", name))
    return written
