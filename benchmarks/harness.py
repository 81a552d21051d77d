"""
What the benchmark scripts and the command-line tests share: :func:`line_ood` runs the command
in this process, exactly as typed, and :func:`write_png` writes images of a dataset as the PNG
files it reads.
"""

import contextlib
import io
from pathlib import Path
from typing import Iterable, List, Tuple

from torch.utils.data import Dataset

from line_plugin.cli import main


def line_ood(*args: str) -> Tuple[int, str, str]:
    """
    ``line-ood ARGS`` in this process (:func:`line_plugin.cli.main`).

    :param args: the command line after ``line-ood``
    :return: the exit status (argparse's for ``--help`` and usage errors), stdout and stderr
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help and usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def write_png(
    dataset: Dataset, positions: Iterable[int], folder: Path, prefix: str = ""
) -> List[Path]:
    """
    Images of a dataset as PNG files (the same pixels), ``folder/<prefix><position>.png`` with
    the position in five digits.

    :param dataset: yields ``(PIL image, label)`` (no transform)
    :param positions: the items to write
    :param folder: where to write them; made if missing
    :param prefix: the start of each file name
    :return: the files written, in the order of ``positions``
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in positions:
        path = folder / f"{prefix}{i:05d}.png"
        dataset[i][0].save(path)
        paths.append(path)
    return paths
