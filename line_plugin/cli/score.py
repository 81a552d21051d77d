"""
``line-ood score``: score image files with a state saved by ``line-ood fit`` (or by
:meth:`line_plugin.LINe.save`, given ``--backbone``), as CSV (``file``, ``score``, ``class``).
"""

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import LINe
from ..plugin.state import read_state
from . import common

EXAMPLES = """examples:
  line-ood score --state line.pt images/               # CSV on stdout
  line-ood score --state line.pt --backbone densenet_bc100 a.png b.jpg --out scores.csv

Scores are LINe's: higher means more likely out-of-distribution. The class column is the
classifier's prediction."""

#: file name endings read when given a folder (case-insensitive)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def run(args: argparse.Namespace) -> int:
    """``line-ood score``: score image files with a saved state, as CSV."""
    state, metadata = read_state(args.state)
    name = backbone_name(metadata, args.backbone, args.state)
    files = find_images(args.images)
    common.check_output(args.out)
    backbone = common.load_backbone(name, args.models, args.device)
    detector = LINe(backbone.encoder, backbone.weight, backbone.bias)
    detector.load_state_dict(state).to(args.device)
    scores, labels = score_files(detector, backbone, files, args)
    classes = metadata.get("classes")
    if classes is None or len(classes) != len(backbone.weight):
        classes = None
    rows = [
        (str(f), f"{s:.6f}", classes[k] if classes else str(k))
        for f, s, k in zip(files, scores.tolist(), labels.tolist())
    ]
    _write_csv(rows, args.out)
    print(f"scored {common.plural(len(rows), 'image')} with {args.state}", file=sys.stderr)
    return 0


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


@torch.no_grad()
def score_files(
    detector: LINe, backbone: common.Backbone, files: Sequence[Path], args: argparse.Namespace
) -> Tuple[Tensor, Tensor]:
    """
    :return: outlier scores and the classifier's predicted labels of ``files``
    """
    dataset = ImageFiles(files, backbone.transform)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    scores, labels = [], []
    for x, _ in tqdm(loader, desc="score", disable=not args.progress, leave=False):
        z = backbone.encoder(x.to(args.device))
        scores.append(detector.predict_features(z).cpu())
        w, b = backbone.weight.to(z), backbone.bias.to(z)
        labels.append(torch.addmm(b, z, w.T).argmax(dim=1).cpu())
    return torch.cat(scores), torch.cat(labels)


def _write_csv(rows: List[Tuple[str, str, str]], out: Optional[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("file", "score", "class"))
    writer.writerows(rows)
    if out is None:
        sys.stdout.write(buffer.getvalue())
    else:
        Path(out).write_text(buffer.getvalue())
        print(f"wrote {out}", file=sys.stderr)


def add_parser(sub) -> None:
    """add ``score`` to the sub-command parsers ``sub``"""
    p = common.add_command(
        sub,
        "score",
        help="score images with a saved state (CSV: file, score, class)",
        description="Score image files (folders are searched recursively) with a state saved "
        "by 'line-ood fit'; CSV with the columns file, score, class.",
        epilog=EXAMPLES,
        parents=[common.common_options(None)],
    )
    p.add_argument("--state", required=True, metavar="STATE.pt", help="from 'line-ood fit'")
    p.add_argument("images", nargs="+", metavar="FOLDER_OR_FILE", help="images to score")
    common.device_option(p)
    p.add_argument("--out", metavar="FILE.csv", help="write the CSV here (default: stdout)")
    p.set_defaults(func=run)
