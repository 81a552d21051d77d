"""
A one-file HTML page of a scoring run (``line-ood score --report PAGE.html``): what a person
looks at before trusting the decisions.

The page holds a summary (state, backbone, threshold and where it came from, images scored,
skipped and flagged), a histogram of the scores with the threshold beside the histogram of the
calibration scores the state keeps, and three galleries: the most out-of-distribution images, those
nearest the threshold and the most in-distribution ones, :data:`SHOWN` each, with file name,
score, predicted class and decision. Thumbnails are embedded as ``data:`` URIs, so the page can
be mailed or archived without the images.

Its size is bounded whatever the number of images: at most ``3 * SHOWN`` thumbnails of at most
:data:`THUMBNAIL` pixels a side (JPEG), one histogram image of fixed size, file names cut to
:data:`NAME_CHARS` characters and at most :data:`SKIPPED_SHOWN` skipped files listed. Every text
from outside (file names, class names, errors) is escaped. The same inputs give the same bytes.

The histogram needs matplotlib (:func:`check_matplotlib`).
"""

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

import numpy as np
from PIL import Image

from .data import read_image

if TYPE_CHECKING:
    from .pipeline import Row, ScoreResult

#: images in each gallery
SHOWN = 24
#: longest side of a thumbnail, in pixels (smaller images are kept as they are, shown enlarged)
THUMBNAIL = 96
#: JPEG quality of the thumbnails
QUALITY = 85
#: file names longer than this are shown cut, with an ellipsis in front
NAME_CHARS = 120
#: skipped files listed in the summary (the rest are counted)
SKIPPED_SHOWN = 20


def check_matplotlib() -> None:
    """
    :raises ModuleNotFoundError: with a one-line message if matplotlib, which draws the
        histogram, is not installed
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(
            "--report needs matplotlib, which is not installed: pip install matplotlib"
        ) from None


def write_report(path, result: "ScoreResult") -> int:
    """
    Write the page (see :func:`render`) to ``path``.

    :return: its size in bytes
    """
    page = render(result).encode("utf-8")
    Path(path).write_bytes(page)
    return len(page)


def render(result: "ScoreResult") -> str:
    """
    :param result: a scoring run (:meth:`line_plugin.Pipeline.score`): its rows, the files
        skipped, the threshold with where it came from, and the calibration whose scores the
        histogram shows
    :return: the page, one self-contained HTML document
    """
    rows = result.rows
    scores = np.asarray([r.score for r in rows], dtype=np.float64)
    threshold = result.threshold
    calibration = None if result.calibration is None else result.calibration.scores
    # stable orders: by score, ties by position, so that equal inputs give equal pages
    order = np.argsort(scores, kind="stable")
    most_ood = order[::-1][:SHOWN]
    most_id = order[:SHOWN]
    parts = [_HEAD, "<h1>LINe out-of-distribution report</h1>", _summary(result), _LEGEND]
    parts.append(_histogram(scores, calibration, threshold))
    parts.append(_gallery("Most out-of-distribution (highest scores)", rows, most_ood))
    if threshold is None:
        parts.append(
            "<h2>Nearest the threshold</h2><p class=note>No threshold: the state holds none and "
            "none was given (--threshold), so no image is flagged. Fit with a calibration, or "
            "pass --threshold T.</p>"
        )
    else:
        near = np.argsort(np.abs(scores - threshold), kind="stable")[:SHOWN]
        near = sorted(near.tolist(), key=lambda i: (-scores[i], i))
        parts.append(_gallery("Nearest the threshold", rows, np.asarray(near, dtype=np.int64)))
    parts.append(_gallery("Most in-distribution (lowest scores)", rows, most_id))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _summary(result: "ScoreResult") -> str:
    if result.threshold is None:
        decision = "none (no image is flagged)"
    else:
        decision = f"{result.threshold:.4f} ({result.origin})"
    scored, flagged, skipped = result.scored, result.flagged, result.skipped
    share = "" if flagged is None else f" ({100 * flagged / max(scored, 1):.1f} %)"
    items = [
        ("state", result.state or "—"),
        ("backbone", result.backbone),
        ("threshold", decision),
    ]
    calibration = result.threshold_calibration
    if calibration is not None and calibration.tpr is not None:
        items.append(("calibration images kept", f"{100 * calibration.tpr:g} %"))
    items += [
        ("images scored", scored),
        ("images skipped (unreadable)", len(skipped)),
        ("images flagged as OOD", "—" if flagged is None else f"{flagged}{share}"),
    ]
    cells = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in items)
    out = f"<table class=summary>{cells}</table>"
    if skipped:
        listed = "".join(
            f"<li><code>{_name(s.file)}</code>: {_text(s.error)}</li>"
            for s in skipped[:SKIPPED_SHOWN]
        )
        more = len(skipped) - SKIPPED_SHOWN
        if more > 0:
            listed += f"<li>and {more} more</li>"
        out += f"<details open><summary>Skipped files</summary><ul>{listed}</ul></details>"
    return out


def _histogram(
    scores: np.ndarray, calibration: Optional[Sequence[float]], threshold: Optional[float]
) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [("Scores of the images", scores, "#4a77b4")]
    if calibration is not None and len(calibration):
        panels.append(
            ("Calibration scores (held out, in-distribution)", np.asarray(calibration), "#5a9e5a")
        )
    values = np.concatenate([p[1] for p in panels])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 51)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), squeeze=False)
    for ax, (title, data, color) in zip(axes[0], panels):
        data = data[np.isfinite(data)]
        ax.hist(data, bins=bins, color=color)
        if threshold is not None:
            ax.axvline(threshold, color="#c0392b", linestyle="--", label="threshold")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{title}, n = {len(data)}", fontsize=10)
        ax.set_xlabel("LINe score (higher = more out-of-distribution)", fontsize=9)
        ax.set_ylabel("images", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    alt = "histograms of the scores" + ("" if threshold is None else " with the threshold")
    return f'<h2>Scores</h2><img class=hist alt="{alt}" src="data:image/png;base64,{data}">'


def _gallery(title: str, rows: Sequence["Row"], chosen: np.ndarray) -> str:
    cards: List[str] = []
    for i in chosen.tolist():
        row = rows[i]
        if row.ood is not None:
            decision = "OOD" if row.ood else "ID"
        else:
            decision = "no threshold"
        name = str(row.file)
        cards.append(
            f'<figure class="{decision.replace(" ", "-")}">{_thumbnail(name)}'
            f'<figcaption><code title="{_name(name)}">{_name(Path(name).name)}</code>'
            f"<br>score {row.score:.4f}<br>{_text(row.class_name)}"
            f"<br><b>{decision}</b></figcaption></figure>"
        )
    return f"<h2>{_text(title)}</h2><div class=grid>{''.join(cards)}</div>"


def _thumbnail(path: str) -> str:
    try:
        img = read_image(path)
    except (ValueError, OSError):
        return "<div class=missing>unreadable now</div>"
    if max(img.size) > THUMBNAIL:
        img.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=QUALITY)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/jpeg;base64,{data}">'


def _name(name: str) -> str:
    """a file name, cut to :data:`NAME_CHARS` characters, escaped"""
    if len(name) > NAME_CHARS:
        name = "…" + name[-(NAME_CHARS - 1) :]
    return html.escape(name, quote=True)


def _text(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    text = str(value)
    if len(text) > 4 * NAME_CHARS:
        text = text[: 4 * NAME_CHARS - 1] + "…"
    return html.escape(text, quote=True)


_LEGEND = (
    "<p class=note>Higher scores mean more likely out-of-distribution. Each image shows its file "
    "name, score, the class the classifier predicts and the decision: <b class=ood>OOD</b> "
    "(flagged, above the threshold) or <b class=id>ID</b>.</p>"
)

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LINe out-of-distribution report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1250px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.4em; }
table.summary th { text-align: left; padding-right: 1.5em; font-weight: 600; }
table.summary td, table.summary th { padding: 2px 6px; }
img.hist { max-width: 100%; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 112px; padding: 4px; border: 2px solid #ccc; border-radius: 4px;
  font-size: 11px; text-align: center; overflow-wrap: anywhere; }
figure img, .missing { width: 96px; height: 96px; object-fit: contain;
  image-rendering: pixelated; background: #eee; display: block; margin: 0 auto 2px; }
figure.OOD { border-color: #c0392b; } figure.ID { border-color: #3c8d3c; }
figure.OOD b, b.ood { color: #c0392b; } figure.ID b, b.id { color: #3c8d3c; }
code { font-size: 10px; }
.note { color: #555; font-style: italic; }
</style></head><body>"""
