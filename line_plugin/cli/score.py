"""
``line-ood score``: score image files with a state saved by ``line-ood fit`` (or by
:meth:`line_plugin.LINe.save`, given ``--backbone``), and flag those above the state's
threshold; as CSV (``file``, ``score``, ``class``, ``ood``) or JSON, written as batches finish,
with a one-line summary on stderr, and optionally an HTML page to look at
(:mod:`line_plugin.report_html`).

A file that cannot be read (empty, no image, cut short) costs its own row only: it is reported
on stderr and in the summary (JSON: ``skipped``), and the exit status is :data:`SKIPPED`
(``--strict`` makes it an error). ``--resume`` continues an interrupted run: the rows already in
``--out`` are kept and their files are not scored again.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from . import common
from .rows import FORMATS, RowWriter, read_rows

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
    from .. import LINe, data
    from ..plugin.state import read_state

    check_options(args)
    state, metadata = read_state(args.state)
    name = backbone_name(metadata, args.backbone, args.state)
    threshold, source = decision_threshold(metadata, args.threshold, args.state)
    files = data.find_images(args.images)
    done = previous_rows(args, threshold is not None)
    model, split = common.load_backbone(name, args.models, args.device)
    detector = LINe(split.encoder, split.weight, split.bias)
    detector.load_state_dict(state).to(args.device)
    classes = metadata.get("classes")
    if classes is None or len(classes) != len(split.weight):
        classes = None
    scored = {row["file"] for row in done}
    todo = [f for f in files if str(f) not in scored]
    dataset = data.ImageFiles(todo, model.transform, int(model.spec.get("input_size", 32)))
    summary = {"state": str(args.state), "backbone": model.name, "threshold": threshold}
    summary.update(threshold_from=source, **calibration_facts(metadata, source))
    rows, skipped = list(done), []
    stream = sys.stdout if args.out is None else open(args.out, "w", encoding="utf-8")
    try:
        writer = RowWriter(stream, args.format, with_ood=threshold is not None)
        writer.write(done)
        for batch, unreadable in scored_batches(
            detector, split, dataset, args, threshold, classes
        ):
            writer.write(batch)
            rows += batch
            skipped += unreadable
        summary.update(totals(rows, skipped, threshold))
        writer.finish(summary)
    finally:
        if stream is not sys.stdout:
            stream.close()
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    if args.report is not None:
        from ..report_html import write_report

        size = write_report(args.report, rows, summary, metadata.get("calibration_scores"))
        print(f"wrote {args.report} ({size / 1e6:.2f} MB)", file=sys.stderr)
    print(summary_line(summary), file=sys.stderr)
    if skipped and not rows:
        raise ValueError(f"no image could be read ({common.plural(len(skipped), 'file')} skipped)")
    return SKIPPED if skipped else OK


def scored_batches(
    detector, split, dataset, args: argparse.Namespace, threshold: Optional[float], classes
) -> Iterator[Tuple[List[Dict], List[Dict]]]:
    """
    :param detector: the fitted detector
    :param split: the backbone's encoder and head
    :param dataset: :class:`line_plugin.data.ImageFiles`
    :param args: with ``strict`` and the options of :func:`.common.score_batches`
    :param threshold: flag scores above it (:func:`line_plugin.calibration.flag`), or ``None``
    :param classes: class names by label, or ``None``
    :return: per batch, the rows of the images read and ``{"file", "error"}`` of the files that
        could not be read (each also reported on stderr)
    :raises ValueError: with ``--strict``, at the first file that cannot be read
    """
    from ..calibration import flag

    position = 0
    for scores, labels, status in common.score_batches(detector, split, dataset, args):
        rows, skipped = [], []
        ood = [None] * len(scores) if threshold is None else flag(scores, threshold).tolist()
        for score, label, bad, is_ood in zip(
            scores.tolist(), labels.tolist(), status.tolist(), ood
        ):
            path = str(dataset.files[position])
            position += 1
            if bad:
                error = dataset.error(position - 1) or "cannot be read"
                if args.strict:
                    raise ValueError(f"cannot read image {path!r}: {error} (--strict)")
                skipped.append({"file": path, "error": error})
                print(f"{common.PROG}: skipped {path!r}: {error}", file=sys.stderr)
                continue
            row = {
                "file": path,
                "score": score,
                "class": classes[label] if classes else str(label),
            }
            if is_ood is not None:
                row["ood"] = is_ood
            rows.append(row)
        yield rows, skipped


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


def previous_rows(args: argparse.Namespace, with_ood: bool) -> List[Dict]:
    """:return: with ``--resume``, the rows already in ``--out`` (none if it does not exist)"""
    if not args.resume or not Path(args.out).exists():
        return []
    return read_rows(Path(args.out), args.format, with_ood)


def calibration_facts(metadata: Dict, source: Optional[str]) -> Dict:
    """
    :return: ``tpr``, ``calibration_source`` (``"training"``: held-out training images,
        ``"folder"``: images the backbone has not seen) and ``calibration_images`` of the
        state's threshold; ``None`` each where the threshold is not the state's
    """
    if source != "state":
        return {"tpr": None, "calibration_source": None, "calibration_images": None}
    return {
        "tpr": metadata.get("tpr"),
        "calibration_source": metadata.get("calibration_source", "training"),
        "calibration_images": metadata.get("calibration_images"),
    }


def totals(rows: List[Dict], skipped: List[Dict], threshold: Optional[float]) -> Dict:
    """:return: ``scored``, ``flagged`` (``None`` without a threshold) and ``skipped``"""
    flagged = None if threshold is None else sum(1 for r in rows if r["ood"])
    return {"scored": len(rows), "flagged": flagged, "skipped": skipped}


def decision_threshold(
    metadata: Dict, threshold: Optional[float], path: str
) -> Tuple[Optional[float], Optional[str]]:
    """
    :param metadata: of the state file
    :param threshold: ``--threshold``, or ``None``
    :param path: the state file, for the message
    :return: the threshold and where it comes from (``"--threshold"``, ``"state"``), or
        ``None, None`` if neither gives one
    :raises ValueError: if the state's threshold is not a finite number
    """
    if threshold is not None:
        return threshold, "--threshold"
    saved = metadata.get("threshold")
    if saved is None:
        return None, None
    if isinstance(saved, bool) or not isinstance(saved, (int, float)) or not math.isfinite(saved):
        raise ValueError(f"{path!r} holds a threshold that is no finite number: {saved!r}")
    return float(saved), "state"


def summary_line(summary: Dict) -> str:
    """
    :param summary: as written by ``--format json``
    :return: the one line printed on stderr: images scored, flagged and skipped, the threshold
        and where it came from, or why none is flagged
    """
    head = f"scored {common.plural(summary['scored'], 'image')} with {summary['state']}"
    skipped = len(summary.get("skipped") or [])
    tail = f"; skipped {common.plural(skipped, 'unreadable file')}" if skipped else ""
    if summary["threshold"] is None:
        return (
            f"{head}; no threshold in the state, so no ood column: pass --threshold T, "
            f"or fit with --calibration F{tail}"
        )
    share = 100 * summary["flagged"] / max(summary["scored"], 1)
    return (
        f"{head}: {summary['flagged']} flagged as OOD ({share:.1f} %) at threshold "
        f"{summary['threshold']:.4f} ({threshold_source(summary)}){tail}"
    )


def threshold_source(summary: Dict) -> str:
    """:return: where the summary's threshold comes from, in words"""
    if summary["threshold_from"] == "--threshold":
        return "from --threshold"
    n = summary.get("calibration_images")
    if summary.get("calibration_source") == "folder":
        return f"calibrated on {common.plural(n, 'unseen image')}"
    return f"calibrated on {n} held-out training images"


def backbone_name(metadata: Dict, name: Optional[str], path: str) -> str:
    """
    :param metadata: of the state file (:func:`line_plugin.plugin.state.read_state`)
    :param name: ``--backbone``, or ``None`` for the one the state was fitted for
    :param path: the state file, for the messages
    :return: the backbone to score with
    :raises ValueError: if the state was fitted for a shared model of another name (for
        ``ARCH:CHECKPOINT`` names, loading the state checks the head's weights instead), or if
        neither the state nor ``--backbone`` names one
    """
    fitted = metadata.get("backbone")
    if fitted is None:
        if name is None:
            raise ValueError(f"{path!r} names no backbone: pass --backbone")
        return name
    if name is None or fitted == name or ":" in fitted or ":" in name:
        return name or fitted
    raise ValueError(
        f"{path!r} was fitted for backbone {fitted!r}, not {name!r}: "
        f"pass --backbone {fitted} or fit again"
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
