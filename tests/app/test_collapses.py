"""
The table of default settings known to collapse, against the committed benchmark results, and
the footnotes that point from such a row to the tuned one in the tables.
"""

import io
import json
from pathlib import Path

import pytest

from line_plugin.cli.benchmark import print_benchmark
from line_plugin.evaluation.collapses import KNOWN_COLLAPSES, collapse_notes
from line_plugin.evaluation.report import ComparisonResult, footnotes, results_table

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


def _committed(backbone: str) -> ComparisonResult:
    saved = json.loads((RESULTS / f"quality_{backbone}.json").read_text())
    return ComparisonResult(records=saved["records"], meta=saved["meta"])


def test_table_marks_the_noted_rows_and_footnotes_follow():
    records = _committed("densenet_bc100").records
    notes = {"ReAct": "first", "DICE": "second"}
    table = results_table(records, notes=notes).splitlines()
    names = [line.split(" | ")[0].lstrip("| ") for line in table[2:]]
    assert names[:4] == ["MSP", "Energy", "ReAct [1]", "ReAct (tuned)"]
    assert names[4] == "DICE [2]" and sum("[" in n for n in names) == 2
    assert results_table(records) == results_table(records, notes={})
    assert footnotes(notes) == "[1] first\n\n[2] second\n"
    assert footnotes(notes, markdown=False) == "[1] first\n[2] second\n"
    assert footnotes({}) == ""


def test_benchmark_output_points_from_the_collapsed_row_to_the_tuned_one():
    out = io.StringIO()
    print_benchmark(_committed("densenet_bc100"), out)
    text = out.getvalue()
    rows = [line.split()[0:2] for line in text.splitlines() if line.startswith("ReAct")]
    assert rows == [["ReAct", "[1]"], ["ReAct", "(tuned)"]] * 2  # AUROC and FPR95 tables
    note = text[text.index("\n[1] ") :]
    assert "percentile 0.90" in note and "'ReAct (tuned)' row (below)" in note
    assert text.count("[1]") == 3 and "[2]" not in text
    out = io.StringIO()
    print_benchmark(_committed("resnet18"), out)
    assert "[1]" not in out.getvalue()
