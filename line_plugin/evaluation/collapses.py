"""
Detectors whose default setting is known to collapse on a backbone, so that a benchmark table
can mark their rows with a footnote pointing to the tuned row instead of letting a reader take
the number for a bug.

:data:`KNOWN_COLLAPSES` is the one table of these cases, each measured by
``python benchmarks/quality.py --backbone all`` (mean AUROC over the four OOD sets, in
``benchmarks/results/quality_<backbone>.json``); :func:`collapse_notes` picks the cases of one
benchmark run.
"""

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple


@dataclass(frozen=True)
class Collapse:
    """
    A detector's default setting that collapses on some backbones.

    :param detector: the row name of the default detector (a key of
        :func:`~line_plugin.evaluation.make_detectors`)
    :param setting: its default setting, in words
    :param backbones: shared model names (:data:`line_plugin.zoo.MODELS`) it collapses on, each
        with its measured mean AUROC (%) at the default and in the tuned row
    :param why: the reason, in a few words
    :param tuned: the row name of the tuned copy (made by ``--tune``)
    """

    detector: str
    setting: str
    backbones: Tuple[Tuple[str, float, float], ...]
    why: str
    tuned: str


#: the known cases
KNOWN_COLLAPSES: Tuple[Collapse, ...] = (
    Collapse(
        "ReAct",
        "pytorch-ood's default percentile 0.90",
        (("densenet_bc100", 59.6, 91.0), ("densenet_bc100_dice", 53.1, 75.9)),
        "its clip, the 90th percentile of the training activations, is too low for "
        "DenseNet-BC-100 (tuned: the 95th or 99th)",
        "ReAct (tuned)",
    ),
    Collapse(
        "DICE",
        "pytorch-ood's default sparsity p 0.9",
        (("vit_tiny", 44.7, 78.2), ("convnext_atto", 37.4, 66.1)),
        "its contributions (mean activation times weight) assume non-negative, post-ReLU "
        "features; these are signed",
        "DICE (tuned)",
    ),
    Collapse(
        "LINe (paper)",
        "the paper's CIFAR-10 preset (p_a 0.9, p_w 0.9, clip 1.0)",
        (("vit_tiny", 67.0, 79.2), ("convnext_atto", 63.8, 75.5)),
        "its masks and clip assume non-negative, post-ReLU features; these are signed",
        "LINe (tuned)",
    ),
)


def collapse_notes(backbone: str, detectors: Sequence[str]) -> Dict[str, str]:
    """
    The footnotes of one benchmark table.

    :param backbone: the benchmark's backbone name (``meta["backbone"]`` of a result)
    :param detectors: the row names of the table
    :return: row name -> footnote, for the rows of ``detectors`` whose default setting is known
        to collapse on ``backbone``, in the order of ``detectors``; the footnote names the
        tuned row (present in the table, or made by ``--tune``)
    """
    rows = set(detectors)
    notes = {}
    for case in KNOWN_COLLAPSES:
        for name, default, tuned in case.backbones:
            if name != backbone or case.detector not in rows:
                continue
            where = "below" if case.tuned in rows else "with --tune"
            notes[case.detector] = (
                f"{case.detector} at {case.setting} is known to collapse on {backbone} "
                f"(mean AUROC {default:.1f} %, {tuned:.1f} % tuned): {case.why}. "
                f"Read the '{case.tuned}' row ({where}) instead; this is no bug."
            )
    return {name: notes[name] for name in detectors if name in notes}
