"""The rows of ``line-ood score`` written as they come and read back for ``--resume``."""

import csv
import io
import json

import pytest

from line_plugin.cli.rows import RowWriter, read_rows

ROWS = [
    {"file": "a,b.png", "score": -1.25, "class": "cat", "ood": True},
    {"file": "ü.png", "score": -7.5, "class": "dog", "ood": False},
]


def write(format: str, rows, with_ood: bool = True, finish: bool = True) -> str:
    stream = io.StringIO()
    writer = RowWriter(stream, format, with_ood)
    writer.write(rows[:1])
    writer.write(rows[1:])
    if finish:
        writer.finish({"scored": len(rows)})
    return stream.getvalue()


def test_csv_rows_as_before():
    text = write("csv", ROWS)
    assert text.splitlines()[0] == "file,score,class,ood"
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[0] == {"file": "a,b.png", "score": "-1.250000", "class": "cat", "ood": "1"}
    assert parsed[1]["ood"] == "0"


def test_json_is_one_object_with_rows_and_summary():
    result = json.loads(write("json", ROWS))
    assert result == {"rows": ROWS, "summary": {"scored": 2}}
    assert json.loads(write("json", [])) == {"rows": [], "summary": {"scored": 2 - 2}}


@pytest.mark.parametrize("format", ["csv", "json"])
def test_rows_read_back_from_a_complete_or_interrupted_file(tmp_path, format):
    path = tmp_path / f"out.{format}"
    for finish in (True, False):
        text = write(format, ROWS, finish=finish)
        cut = {"csv": '"half.png",-0.', "json": ',\n{"file": "half.png", "sco'}[format]
        path.write_text(text if finish else text + cut)  # a row cut short while written
        assert read_rows(path, format, with_ood=True) == ROWS


def test_a_csv_line_cut_short_is_dropped(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text(write("csv", ROWS)[:-3])
    assert read_rows(path, "csv", with_ood=True) == ROWS[:1]


@pytest.mark.parametrize("format", ["csv", "json"])
def test_resume_refuses_other_columns(tmp_path, format):
    path = tmp_path / f"out.{format}"
    path.write_text(write(format, ROWS))
    with pytest.raises(ValueError, match="cannot resume"):
        read_rows(path, format, with_ood=False)


def test_resume_refuses_another_format(tmp_path):
    path = tmp_path / "out.json"
    path.write_text(write("csv", ROWS))
    with pytest.raises(ValueError, match="no JSON output"):
        read_rows(path, "json", with_ood=True)


@pytest.mark.parametrize("format", ["csv", "json"])
def test_nothing_is_written_before_the_first_row(format):
    stream = io.StringIO()
    writer = RowWriter(stream, format, with_ood=False)
    writer.write([])
    assert stream.getvalue() == ""  # a run failing now leaves no half output
    writer.finish({})
    assert stream.getvalue().startswith("file,score,class\n" if format == "csv" else '{"rows"')
