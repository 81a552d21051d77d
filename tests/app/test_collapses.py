"""The table of default settings known to collapse, against the committed benchmark results."""

import json
from pathlib import Path

import pytest

from line_plugin.evaluation.collapses import KNOWN_COLLAPSES, collapse_notes

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _mean_auroc(backbone: str, detector: str) -> float:
    records = json.loads((RESULTS / f"quality_{backbone}.json").read_text())["records"]
    values = [r["AUROC"] for r in records if r["detector"] == detector]
    assert len(values) == 4, (backbone, detector)
    return 100 * sum(values) / len(values)


@pytest.mark.parametrize(
    "case, backbone, default, tuned",
    [(c, *b) for c in KNOWN_COLLAPSES for b in c.backbones],
    ids=lambda v: getattr(v, "detector", str(v)),
)
def test_each_case_is_the_committed_measurement(case, backbone, default, tuned):
    assert round(_mean_auroc(backbone, case.detector), 1) == default
    assert round(_mean_auroc(backbone, case.tuned), 1) == tuned
    assert tuned - default >= 10  # a collapse, not noise


def test_notes_name_the_tuned_row_in_the_table_or_the_option():
    rows = ["MSP", "ReAct", "ReAct (tuned)", "DICE", "LINe (paper)"]
    notes = collapse_notes("densenet_bc100", rows)
    assert list(notes) == ["ReAct"]
    assert "'ReAct (tuned)' row (below)" in notes["ReAct"] and "59.6" in notes["ReAct"]
    notes = collapse_notes("densenet_bc100", ["ReAct", "LINe (paper)"])
    assert "'ReAct (tuned)' row (with --tune)" in notes["ReAct"]
    notes = collapse_notes("vit_tiny", ["LINe (paper)", "ReAct", "DICE"])
    assert list(notes) == ["LINe (paper)", "DICE"]  # the table's order


def test_no_notes_for_other_backbones_or_rows():
    assert collapse_notes("resnet18", ["ReAct", "DICE", "LINe (paper)"]) == {}
    assert collapse_notes("densenet_bc100", ["Energy", "ReAct (tuned)"]) == {}
    assert collapse_notes("resnet18-mycheckpoint", ["ReAct"]) == {}
