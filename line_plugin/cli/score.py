"""
``line-ood score``: score image files with a state saved by ``line-ood fit`` (or by
:meth:`line_plugin.LINe.save`, given ``--backbone``), and flag those above the state's
threshold; as CSV (``file``, ``score``, ``class``, ``ood``) or JSON, written as batches finish,
with a one-line summary on stderr, and optionally an HTML page to look at
(:mod:`line_plugin.report_html`). A thin shell over :class:`line_plugin.Pipeline` (``load``,
``score_batches``, ``result``, ``report``).

A file that cannot be read (empty, no image, cut short) costs its own row only: it is reported
on stderr and in the summary (JSON: ``skipped``), and the exit status is :data:`SKIPPED`
(``--strict`` makes it an error). ``--resume`` continues an interrupted run: the rows already in
``--out`` are kept and their files are not scored again.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List

from ..messages import plural
from . import common
from .rows import FORMATS, RowWriter, read_rows

if TYPE_CHECKING:
    from ..pipeline import Row, ScoreResult

#: exit status: every image scored
OK = 0
#: exit status: an error, nothing more is scored (argparse's usage errors exit with 2)
FAILED = 1
#: exit status: every readable image scored, some unreadable files skipped
SKIPPED = 3

EXAMPLES = f"""examples:
  line-ood score --state line.pt images/               # CSV on stdout
  line-ood score --state line.pt --backbone densenet_bc100 a.png b.jpg --out scores.csv
  line-ood score --state line.pt --threshold -8.5 --format json images/ > scores.json
  line-ood score --state line.pt images/ --out scores.csv --report report.html
  line-ood score --state line.pt images/ --out scores.csv --resume   # after an interruption

Scores are LINe's: higher means more likely out-of-distribution. The class column is the
classifier's prediction. ood is 1 where the score is above the threshold: the one 'line-ood
fit' saved in the state (keeping --tpr of its calibration images), or --threshold. Without
either, there is no ood column, and the summary says so.

--format json writes one object: {{"rows": [{{"file", "score", "class", "ood"}}, ...],
"summary": {{"scored", "flagged", "skipped", "threshold", "threshold_from", "tpr",
"calibration_source", "calibration_images", "state", "backbone"}}}}; ood is true or false
(absent without a threshold, and flagged, threshold, threshold_from are null); skipped lists
{{"file", "error"}} for each file that could not be read.

Rows are written as batches finish. A file that cannot be read (empty, not an image, cut
short) gets no row: it is reported on stderr ('line-ood: skipped FILE: REASON'), listed in the
JSON summary and counted in the summary line, and the other images are scored. --strict makes
it an error instead. --resume keeps the rows already in --out and scores only the other files
(the skipped ones are tried again); use the same options as the first run.

exit status: {OK} every image scored; {SKIPPED} every readable image scored, some unreadable
files skipped; {FAILED} error (or no file could be read; with --strict, any unreadable file);
2 bad arguments; 130 interrupted (the rows written so far are kept: rerun with --resume)."""


def run(args: argparse.Namespace) -> int:
    """``line-ood score``: score image files with a saved state; CSV or JSON and a summary."""
    from .. import data
    from ..pipeline import Pipeline, UnreadableImageError, file

    check_options(args)
    saved = file.read(args.state)
    files = data.find_images(args.images)
    pipe = Pipeline.load(saved, args.backbone, models_dir=args.models, device=args.device)
    threshold = pipe.decision_threshold(args.threshold)
    done = previous_rows(args, threshold is not None)
    batches = pipe.score_batches(
        files,
        args.threshold,
        strict=args.strict,
        exclude={row.file for row in done},
        batch_size=args.batch_size,
        workers=args.workers,
        progress=common.show_progress(args),
    )
    rows, skipped = list(done), []
    stream = sys.stdout if args.out is None else open(args.out, "w", encoding="utf-8")
    try:
        writer = RowWriter(stream, args.format, with_ood=threshold is not None)
        writer.write([row.as_dict() for row in done])
        for batch in batches:
            for s in batch.skipped:
                print(f"{common.PROG}: skipped {s.file!r}: {s.error}", file=sys.stderr)
            writer.write([row.as_dict() for row in batch.rows])
            rows += batch.rows
            skipped += batch.skipped
        result = pipe.result(rows, skipped, args.threshold)
        writer.finish(summary(result))
    except UnreadableImageError as e:
        raise ValueError(f"{e} (--strict)") from None
    finally:
        if stream is not sys.stdout:
            stream.close()
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    if args.report is not None:
        size = pipe.report(args.report, result)
        print(f"wrote {args.report} ({size / 1e6:.2f} MB)", file=sys.stderr)
    print(summary_line(result), file=sys.stderr)
    if skipped and not rows:
        raise ValueError(f"no image could be read ({plural(len(skipped), 'file')} skipped)")
    return SKIPPED if skipped else OK


def check_options(args: argparse.Namespace) -> None:
    """
    Fail before anything is loaded or scored: on an output whose folder is missing, a report
    path that is a folder or lies in a missing one, ``--resume`` without ``--out``, and
    ``--report`` without matplotlib.

    :raises FileNotFoundError: for a missing folder
    :raises ValueError: for the other mistakes
    """
    common.check_output(args.out)
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out FILE: the output of the run to continue")
    if args.report is not None:
        report = Path(args.report)
        if report.is_dir():
            raise ValueError(f"cannot write --report {args.report!r}: it is a folder")
        if not report.resolve().parent.is_dir():
            raise FileNotFoundError(
                f"cannot write --report {args.report!r}: its folder does not exist"
            )
        if args.out is not None and report.resolve() == Path(args.out).resolve():
            raise ValueError("--report and --out name the same file")
        from ..report_html import check_matplotlib

        check_matplotlib()


def previous_rows(args: argparse.Namespace, with_ood: bool) -> List["Row"]:
    """:return: with ``--resume``, the rows already in ``--out`` (none if it does not exist)"""
    from ..pipeline import Row

    if not args.resume or not Path(args.out).exists():
        return []
    return [Row.from_dict(row) for row in read_rows(Path(args.out), args.format, with_ood)]


def summary(result: "ScoreResult") -> Dict:
    """:return: the summary of ``--format json`` (see the epilog)"""
    calibration = result.threshold_calibration
    threshold_from = None
    if result.threshold is not None:
        threshold_from = "--threshold" if result.given else "state"
    return {
        "state": result.state,
        "backbone": result.backbone,
        "threshold": result.threshold,
        "threshold_from": threshold_from,
        "tpr": None if calibration is None else calibration.tpr,
        "calibration_source": None if calibration is None else calibration.source,
        "calibration_images": None if calibration is None else calibration.images,
        "scored": result.scored,
        "flagged": result.flagged,
        "skipped": [s.as_dict() for s in result.skipped],
    }


def summary_line(result: "ScoreResult") -> str:
    """
    :return: the one line printed on stderr: images scored, flagged and skipped, the threshold
        and where it came from (:meth:`line_plugin.Calibration.describe`), or why none is
        flagged
    """
    head = f"scored {plural(result.scored, 'image')} with {result.state}"
    skipped = len(result.skipped)
    tail = f"; skipped {plural(skipped, 'unreadable file')}" if skipped else ""
    if result.threshold is None:
        return (
            f"{head}; no threshold in the state, so no ood column: pass --threshold T, "
            f"or fit with --calibration F{tail}"
        )
    share = 100 * result.flagged / max(result.scored, 1)
    return (
        f"{head}: {result.flagged} flagged as OOD ({share:.1f} %) at threshold "
        f"{result.threshold:.4f} ({result.origin}){tail}"
    )


def _threshold(text: str) -> float:
    """a finite number"""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_parser(sub) -> None:
    """add ``score`` to the sub-command parsers ``sub``"""
    p = common.add_command(
        sub,
        "score",
        help="score images with a saved state and flag the outliers (CSV or JSON)",
        description="Score image files (folders are searched recursively) with a state saved "
        "by 'line-ood fit' and flag those above its threshold; CSV with the columns file, "
        "score, class, ood (or JSON), and a one-line summary on stderr.",
        epilog=EXAMPLES,
        parents=[common.common_options(None)],
    )
    p.add_argument("--state", required=True, metavar="STATE.pt", help="from 'line-ood fit'")
    p.add_argument("images", nargs="+", metavar="FOLDER_OR_FILE", help="images to score")
    common.device_option(p)
    p.add_argument(
        "--threshold",
        type=_threshold,
        metavar="T",
        help="flag scores above T (default: the threshold saved by 'line-ood fit')",
    )
    p.add_argument("--format", choices=FORMATS, default="csv", help="output format (default: csv)")
    p.add_argument("--out", metavar="FILE", help="write the scores here (default: stdout)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --out and score only the other files",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop with an error at the first file that cannot be read (default: skip it)",
    )
    p.add_argument(
        "--report",
        metavar="PAGE.html",
        help="also write one self-contained HTML page: summary, score histogram, the most "
        "OOD, most ID and nearest-threshold images (needs matplotlib)",
    )
    p.set_defaults(func=run)
