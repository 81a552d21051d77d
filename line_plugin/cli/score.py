"""
``line-ood score``: score image files with a state saved by ``line-ood fit`` (or by
:meth:`line_plugin.LINe.save`, given ``--backbone``), and flag those above the state's
threshold; as CSV (``file``, ``score``, ``class``, ``ood``) or JSON, with a one-line summary on
stderr.
"""

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .. import LINe
from ..calibration import flag
from ..plugin.state import read_state
from . import common

EXAMPLES = """examples:
  line-ood score --state line.pt images/               # CSV on stdout
  line-ood score --state line.pt --backbone densenet_bc100 a.png b.jpg --out scores.csv
  line-ood score --state line.pt --threshold -8.5 --format json images/ > scores.json

Scores are LINe's: higher means more likely out-of-distribution. The class column is the
classifier's prediction. ood is 1 where the score is above the threshold: the one 'line-ood
fit --calibration' saved in the state (keeping --tpr of held-out training images), or
--threshold. Without either, there is no ood column, and the summary says so.

--format json writes one object: {"rows": [{"file", "score", "class", "ood"}, ...],
"summary": {"scored", "flagged", "threshold", "threshold_from", "tpr", "state"}}; ood is
true or false (absent without a threshold, and flagged, threshold, threshold_from are null)."""

#: file name endings read when given a folder (case-insensitive)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
#: output formats of ``--format``
FORMATS = ("csv", "json")


def run(args: argparse.Namespace) -> int:
    """``line-ood score``: score image files with a saved state; CSV or JSON and a summary."""
    state, metadata = read_state(args.state)
    name = backbone_name(metadata, args.backbone, args.state)
    threshold, source = decision_threshold(metadata, args.threshold, args.state)
    files = find_images(args.images)
    common.check_output(args.out)
    backbone = common.load_backbone(name, args.models, args.device)
    detector = LINe(backbone.encoder, backbone.weight, backbone.bias)
    detector.load_state_dict(state).to(args.device)
    dataset = ImageFiles(files, backbone.transform)
    scores, labels = common.score_dataset(detector, backbone, dataset, args)
    classes = metadata.get("classes")
    if classes is None or len(classes) != len(backbone.weight):
        classes = None
    ood = None if threshold is None else flag(scores, threshold)
    rows = [
        {"file": str(f), "score": s, "class": classes[k] if classes else str(k)}
        for f, s, k in zip(files, scores.tolist(), labels.tolist())
    ]
    if ood is not None:
        for row, is_ood in zip(rows, ood.tolist()):
            row["ood"] = is_ood
    summary = {
        "scored": len(rows),
        "flagged": None if ood is None else int(np.count_nonzero(ood)),
        "threshold": threshold,
        "threshold_from": source,
        "tpr": metadata.get("tpr") if source == "state" else None,
        "state": str(args.state),
    }
    text = to_json(rows, summary) if args.format == "json" else to_csv(rows)
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    print(summary_line(summary), file=sys.stderr)
    return 0


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
    :return: the one line printed on stderr: images scored and flagged, or why none is flagged
    """
    head = f"scored {common.plural(summary['scored'], 'image')} with {summary['state']}"
    if summary["threshold"] is None:
        return (
            f"{head}; no threshold in the state, so no ood column: pass --threshold T, "
            "or fit with --calibration F"
        )
    share = 100 * summary["flagged"] / max(summary["scored"], 1)
    return (
        f"{head}: {summary['flagged']} flagged as OOD ({share:.1f} %) at threshold "
        f"{summary['threshold']:.4f}"
    )


def to_csv(rows: List[Dict]) -> str:
    """:return: the rows as CSV (scores with 6 decimals, ``ood`` as 1 or 0)"""
    buffer = io.StringIO()
    columns = ["file", "score", "class"] + (["ood"] if rows and "ood" in rows[0] else [])
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = {**row, "score": f"{row['score']:.6f}"}
        if "ood" in row:
            cells["ood"] = int(row["ood"])
        writer.writerow([cells[c] for c in columns])
    return buffer.getvalue()


def to_json(rows: List[Dict], summary: Dict) -> str:
    """:return: ``{"rows": rows, "summary": summary}`` as indented JSON"""
    return json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n"


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


def find_images(paths: Sequence[str]) -> List[Path]:
    """
    :param paths: image files and folders (searched recursively for :data:`IMAGE_EXTENSIONS`)
    :return: the image files, folders' contents sorted
    :raises FileNotFoundError: for a missing path
    :raises ValueError: if no image is found
    """
    found: List[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {name!r}")
    if not found:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(paths)}")
    return found


class ImageFiles(Dataset):
    """
    Image files as a dataset of ``(tensor, -1)``.

    :param files: image paths
    :param transform: PIL image to tensor
    """

    def __init__(self, files: Sequence[Path], transform: Callable):
        self.files = list(files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int) -> Tuple[Tensor, int]:
        path = self.files[item]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB")), -1
        except OSError as e:
            raise ValueError(f"cannot read image {str(path)!r}: {common.first_line(e)}") from e


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
    p.set_defaults(func=run)
