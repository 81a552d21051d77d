"""The HTML page of ``line-ood score --report``, on synthetic rows and small image files."""

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import List

import numpy as np
import pytest
from PIL import Image

from line_plugin import report_html
from line_plugin.pipeline import Calibration, Row, ScoreResult, Skipped
from line_plugin.report_html import NAME_CHARS, SHOWN, render

pytest.importorskip("matplotlib")


class Page(HTMLParser):
    """the tags, thumbnails and text of a page"""

    def __init__(self, text: str):
        super().__init__()
        self.tags: List[str] = []
        self.thumbnails: List[str] = []
        self.text: List[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        src = dict(attrs).get("src") or ""
        if tag == "img" and src.startswith("data:image/jpeg;base64,"):
            self.thumbnails.append(src)

    def handle_data(self, data):
        self.text.append(data)


def thumbnail_size(src: str):
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size


def make_rows(folder: Path, n: int, threshold: float = 0.0) -> List[Row]:
    """``n`` images: score i - n/2, so the highest scores are the last files"""
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        path = folder / f"img{i:04d}.png"
        Image.new("RGB", (32, 32), (i % 256, 0, 0)).save(path)
        score = float(i - n / 2)
        rows.append(Row(str(path), score, "cat", score > threshold))
    return rows


def result(rows, threshold=0.0, skipped=(), calibration=None) -> ScoreResult:
    """a run flagged by the threshold of a calibration on 500 unseen images"""
    scores = [] if calibration is None else list(calibration)
    calibrated = Calibration(threshold, 0.95, "folder", 500, scores, "val/")
    return ScoreResult(rows, list(skipped), threshold, False, calibrated, "resnet18", "s.pt")


def test_page_parses_with_thumbnails_and_summary_figures(tmp_path):
    rows = make_rows(tmp_path / "i", 100)
    skipped = [Skipped("bad.png", "empty file")]
    text = render(result(rows, skipped=skipped, calibration=np.linspace(-3, 1, 500)))
    page = Page(text)
    assert page.tags.count("html") == 1 and page.tags.count("table") == 1
    assert len(page.thumbnails) == 3 * SHOWN
    words = " ".join(page.text)
    for expected in ("resnet18", "s.pt", "0.0000 (calibrated on 500 unseen images)", "bad.png"):
        assert expected in words
    assert re.search(r"calibration images kept\s*95 %", words)
    assert re.search(r"images scored\s*100", words) and re.search(r"skipped.*\s*1", words)
    assert "49 (49.0 %)" in words  # scores 1 .. 49 are above 0
    # the gallery of the most OOD starts with the highest score, the most ID with the lowest
    assert words.index("img0099.png") < words.index("img0050.png") < words.index("img0000.png")
    assert text.count("data:image/png;base64,") == 1  # one histogram image


def test_identical_inputs_give_identical_pages(tmp_path):
    rows = make_rows(tmp_path / "i", 30)
    first = render(result(rows, calibration=[0.5, 1.0, 2.0]))
    assert render(result(rows, calibration=[0.5, 1.0, 2.0])) == first


def test_file_names_are_escaped(tmp_path):
    folder = tmp_path / "i"
    rows = make_rows(folder, 3)
    script = folder / "<script>alert(1)<\\script>.png"
    Image.new("RGB", (8, 8)).save(script)
    rows.append(Row(str(script), 9.0, "<b>cat</b>", True))
    text = render(result(rows))
    page = Page(text)
    assert "script" not in page.tags
    assert page.tags.count("b") == page.tags.count("figure") + 2  # decisions and the legend
    assert "<script>alert(1)" in " ".join(page.text)  # shown as text
    assert "&lt;script&gt;" in text and "<b>cat</b>" not in text


def test_without_threshold_the_page_says_so(tmp_path):
    rows = [row._replace(ood=None) for row in make_rows(tmp_path / "i", 40)]
    page = Page(render(ScoreResult(rows, [], None, False, None, "resnet18", "s.pt")))
    words = " ".join(page.text)
    assert "No threshold" in words and "no image is flagged" in words
    assert len(page.thumbnails) == 2 * SHOWN  # no gallery nearest a threshold
    assert sum(w == "no threshold" for w in page.text) == 2 * SHOWN  # each image's decision


def test_size_is_bounded_whatever_the_number_of_images(tmp_path):
    small = make_rows(tmp_path / "a", 3 * SHOWN)
    large = make_rows(tmp_path / "b", 20 * SHOWN)
    for rows in (small, large):
        assert len(Page(render(result(rows))).thumbnails) == 3 * SHOWN
    long_name = tmp_path / ("x" * 200 + ".png")
    Image.new("RGB", (400, 300)).save(long_name)
    rows = small + [Row(str(long_name), 99.0, "cat", True)]
    text = render(result(rows))
    assert "x" * NAME_CHARS not in text  # cut
    width = max(
        Image.open(
            __import__("io").BytesIO(__import__("base64").b64decode(src.split(",", 1)[1]))
        ).size[0]
        for src in Page(text).thumbnails
    )
    assert width == report_html.THUMBNAIL  # the 400 x 300 image shrunk
