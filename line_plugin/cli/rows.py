"""
The rows of ``line-ood score`` as CSV or JSON, written as batches finish, and read back to
resume an interrupted run.

CSV: a header ``file,score,class[,ood]``, then one line per image scored (scores with 6
decimals, ``ood`` as 1 or 0). JSON: one object, ``{"rows": [...], "summary": {...}}``, with each
row on a line of its own, so that a file cut short by an interruption still yields every row
written before it (:func:`read_rows`); the summary is written last.
"""

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, TextIO

#: output formats of ``--format``
FORMATS = ("csv", "json")


def columns(with_ood: bool) -> List[str]:
    """:return: the columns of a row: ``file``, ``score``, ``class`` and ``ood`` if flagged"""
    return ["file", "score", "class"] + (["ood"] if with_ood else [])


class RowWriter:
    """
    Writes rows to a stream as they come, flushing after each batch; the header comes with the
    first row (or at the end), so that a run that fails before any row is scored writes nothing.

    :param stream: the output (a file opened for writing, or stdout)
    :param format: ``"csv"`` or ``"json"``
    :param with_ood: whether rows carry the ``ood`` decision
    """

    def __init__(self, stream: TextIO, format: str, with_ood: bool):
        self.stream = stream
        self.format = format
        self.columns = columns(with_ood)
        self._first = True
        self._started = False
        self._csv = csv.writer(stream, lineterminator="\n")

    def _start(self) -> None:
        if not self._started:
            if self.format == "csv":
                self._csv.writerow(self.columns)
            else:
                self.stream.write('{"rows": [\n')
            self._started = True

    def write(self, rows: List[Dict]) -> None:
        """write ``rows`` (``file``, ``score``, ``class`` and maybe ``ood``) and flush"""
        if not rows:
            return
        self._start()
        for row in rows:
            if self.format == "csv":
                cells = {**row, "score": f"{row['score']:.6f}"}
                if "ood" in row:
                    cells["ood"] = int(row["ood"])
                self._csv.writerow([cells[c] for c in self.columns])
            else:
                self.stream.write(("" if self._first else ",\n") + json.dumps(row))
            self._first = False
        self.stream.flush()

    def finish(self, summary: Dict) -> None:
        """end the output: for JSON, close the rows and write ``summary``"""
        self._start()
        if self.format == "json":
            self.stream.write(("\n" if not self._first else "") + "],\n")
            self.stream.write('"summary": ' + json.dumps(summary, indent=1) + "}\n")
        self.stream.flush()


def read_rows(path: Path, format: str, with_ood: bool) -> List[Dict]:
    """
    The rows of an earlier run's output, complete or cut short (an incomplete last line is
    dropped), for ``--resume``.

    :param path: the output file of the earlier run
    :param format: its format, ``"csv"`` or ``"json"``
    :param with_ood: whether this run writes the ``ood`` column
    :return: its rows, as :class:`RowWriter` takes them (CSV scores rounded to 6 decimals)
    :raises ValueError: if the file is no output of ``line-ood score`` in this format, or its
        columns differ from this run's (another threshold setting)
    """
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return []
    expected = columns(with_ood)
    if format == "csv":
        lines = text.splitlines(keepends=True)
        if not lines[-1].endswith("\n"):
            lines = lines[:-1]  # cut short while writing
        reader = csv.DictReader(io.StringIO("".join(lines)))
        if reader.fieldnames != expected:
            raise ValueError(
                f"cannot resume {str(path)!r}: its columns are {reader.fieldnames}, this run "
                f"writes {expected} (same --format and threshold as the first run?)"
            )
        rows = []
        for row in reader:
            out = {"file": row["file"], "score": float(row["score"]), "class": row["class"]}
            if with_ood:
                out["ood"] = row["ood"] == "1"
            rows.append(out)
        return rows
    lines = text.splitlines()
    if not lines[0].startswith('{"rows": ['):
        raise ValueError(f"cannot resume {str(path)!r}: it is no JSON output of line-ood score")
    rows = []
    for line in lines[1:]:
        row = _json_row(line.strip().rstrip(","))
        if row is None:
            break
        if sorted(row) != sorted(expected):
            raise ValueError(
                f"cannot resume {str(path)!r}: its rows hold {sorted(row)}, this run writes "
                f"{sorted(expected)} (same threshold as the first run?)"
            )
        rows.append(row)
    return rows


def _json_row(text: str) -> Optional[Dict]:
    try:
        row = json.loads(text)
    except ValueError:
        return None
    return row if isinstance(row, dict) and "file" in row else None
