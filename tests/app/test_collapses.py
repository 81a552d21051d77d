"""
The table of default settings known to collapse (:data:`KNOWN_COLLAPSES`), the notes that
:func:`collapse_notes` picks from it for one benchmark, and the footnotes that point from such a
row to the tuned one in the tables; on results made here, not on the committed benchmark files.
"""

import io

import pytest

from line_plugin.cli.benchmark import print_benchmark
from line_plugin.evaluation.baselines import detector_names
from line_plugin.evaluation.collapses import KNOWN_COLLAPSES, collapse_notes
from line_plugin.evaluation.report import ComparisonResult, footnotes, results_table
from line_plugin.zoo import MODELS

DATASETS = ("dtd", "imagenet", "mnist", "fashion_mnist")


def _result(backbone: str, rows) -> ComparisonResult:
    """a benchmark result of ``rows`` on ``backbone``, every metric made up but in range"""
    records = [
        {"backbone": backbone, "detector": row, "dataset": dataset, "AUROC": 0.5 + 0.01 * i,
         "FPR95": 0.5 - 0.01 * j}
        for i, row in enumerate(rows) for j, dataset in enumerate(DATASETS)
    ]  # fmt: skip
    return ComparisonResult(records=records, meta={"backbone": backbone})


@pytest.mark.parametrize("case", KNOWN_COLLAPSES, ids=lambda c: c.detector)
def test_each_case_names_real_rows_and_models(case):
    base = "LINe" if case.detector == "LINe (paper)" else case.detector
    assert base in detector_names()
    assert case.tuned == f"{base} (tuned)"  # the row compare_detectors names the tuned copy
    for backbone, default, tuned in case.backbones:
        assert backbone in MODELS
        assert 0 < default < tuned <= 100 and tuned - default >= 10  # a collapse, not noise


@pytest.mark.parametrize("case", KNOWN_COLLAPSES, ids=lambda c: c.detector)
def test_a_note_names_the_measurement_and_where_the_tuned_row_is(case):
    backbone, default, tuned = case.backbones[0]
    below = collapse_notes(backbone, ["MSP", case.detector, case.tuned])
    assert list(below) == [case.detector]
    note = below[case.detector]
    assert f"{default:.1f} %" in note and f"{tuned:.1f} % tuned" in note
    assert f"'{case.tuned}' row (below)" in note and case.why in note
    elsewhere = collapse_notes(backbone, [case.detector])[case.detector]
    assert f"'{case.tuned}' row (with --tune)" in elsewhere


def test_notes_follow_the_tables_order_and_skip_other_rows_and_backbones():
    # a backbone where DICE and LINe's preset collapse, ReAct does not
    vit = next(c for c in KNOWN_COLLAPSES if c.detector == "DICE").backbones[0][0]
    assert list(collapse_notes(vit, ["LINe (paper)", "ReAct", "DICE"])) == ["LINe (paper)", "DICE"]
    assert collapse_notes(vit, ["DICE (tuned)", "Energy"]) == {}
    assert collapse_notes("resnet18", [c.detector for c in KNOWN_COLLAPSES]) == {}
    assert collapse_notes("resnet18-mycheckpoint", ["ReAct"]) == {}


def test_table_marks_the_noted_rows_and_footnotes_follow():
    rows = ["MSP", "Energy", "ReAct", "ReAct (tuned)", "DICE", "LINe (paper)"]
    records = _result("densenet_bc100", rows).records
    notes = {"ReAct": "first", "DICE": "second"}
    table = results_table(records, notes=notes).splitlines()
    names = [line.split(" | ")[0].lstrip("| ") for line in table[2:]]
    assert names == ["MSP", "Energy", "ReAct [1]", "ReAct (tuned)", "DICE [2]", "LINe (paper)"]
    assert results_table(records) == results_table(records, notes={})
    assert footnotes(notes) == "[1] first\n\n[2] second\n"
    assert footnotes(notes, markdown=False) == "[1] first\n[2] second\n"
    assert footnotes({}) == ""


def test_benchmark_output_points_from_the_collapsed_row_to_the_tuned_one():
    (case,) = [c for c in KNOWN_COLLAPSES if c.detector == "ReAct"]
    backbone = case.backbones[0][0]
    rows = ["MSP", "ReAct", "ReAct (tuned)", "LINe (paper)"]
    out = io.StringIO()
    print_benchmark(_result(backbone, rows), out)
    text = out.getvalue()
    marked = [line.split()[0:2] for line in text.splitlines() if line.startswith("ReAct")]
    assert marked == [["ReAct", "[1]"], ["ReAct", "(tuned)"]] * 2  # AUROC and FPR95 tables
    note = text[text.index("\n[1] ") :]
    assert case.setting in note and "'ReAct (tuned)' row (below)" in note
    assert text.count("[1]") == 3 and "[2]" not in text
    out = io.StringIO()
    print_benchmark(_result("resnet18", rows), out)
    assert "[1]" not in out.getvalue()
