"""
What the sub-commands share: the common options and argument types.

Nothing heavy is imported at the top of the CLI's modules: ``line-ood --help``, ``--version``
and argument errors answer without loading torch, timm or pytorch-ood. The names the options
offer are the library's own tables, from its torch-free modules: the shared models
(:data:`line_plugin.catalog.MODELS`), the OOD sets (:data:`line_plugin.catalog.OOD_SETS`) and the
presets (:data:`line_plugin.plugin.presets.PRESET_NAMES`).
"""

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Optional

from ..batching import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from ..catalog import MODELS

PROG = "line-ood"
DEFAULT_BACKBONE = "densenet_bc100"

#: errors of the package reported as one line, without a traceback
USER_ERRORS = (ValueError, KeyError, NotImplementedError, OSError, RuntimeError)


def data_root(folder: Optional[str]) -> Path:
    """
    :param folder: ``--data``, or ``None`` for the shared data folder
    :return: the existing data folder
    :raises FileNotFoundError: if it is missing
    """
    from .. import data

    if folder is None:
        return data.default_data_dir()
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"data folder {folder!r} does not exist (--data)")
    return Path(folder)


# -- checks and messages -------------------------------------------------------------------------


def check_output(path: Optional[str]) -> None:
    """:raises FileNotFoundError: if the folder of an output file does not exist"""
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise FileNotFoundError(f"cannot write {path!r}: its folder does not exist")


# -- argument types and options ------------------------------------------------------------------


def count(text: str) -> Optional[int]:
    """``all`` (``None``) or a positive integer"""
    if text.lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value


def device(text: str) -> str:
    """a torch device that is available (torch is imported for any other than ``cpu``)"""
    if text == "cpu":
        return text
    import torch

    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device is available")
    return text


def common_options(backbone_default: Optional[str]) -> argparse.ArgumentParser:
    """
    :param backbone_default: the default of ``--backbone`` (``None``: the state's)
    :return: a parent parser with ``--backbone``, ``--models``, ``--batch-size``, ``--workers``
        and ``--quiet`` (alias ``--no-progress``)
    """
    parent = argparse.ArgumentParser(add_help=False)
    shown = backbone_default or "the one the state was fitted for"
    parent.add_argument(
        "--backbone",
        default=backbone_default,
        metavar="NAME",
        help=f"a shared model ({', '.join(MODELS)}) or ARCH:CHECKPOINT, a timm model name "
        f"and a checkpoint file (default: {shown})",
    )
    parent.add_argument(
        "--models",
        metavar="DIR",
        help="shared models folder (default: $LINE_OOD_MODELS or ../shared/models)",
    )
    parent.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"images per batch (default: {DEFAULT_BATCH_SIZE})",
    )
    parent.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"data loader processes (default: {DEFAULT_WORKERS})",
    )
    parent.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress bars, on a terminal either (without a terminal there are none)",
    )
    return parent


def show_progress(args: argparse.Namespace) -> bool:
    """
    :return: whether to show progress bars: only where stderr is a terminal and without
        ``--quiet``, so that a log file or a CI log holds no carriage-return frames
    """
    return not args.quiet and sys.stderr.isatty()


def data_option(parser) -> None:
    """add ``--data``"""
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data folder with cifar10_jpeg/ and ood32/ (default: $LINE_OOD_DATA or "
        "../shared/data)",
    )


def device_option(parser) -> None:
    """add ``--device``"""
    parser.add_argument(
        "--device", type=device, default="cpu", help="torch device, e.g. cuda (default: cpu)"
    )


def add_command(sub, name: str, help: str, description: str, epilog: str, parents=()):
    """:return: a sub-command parser with a wrapped description and verbatim examples"""
    return sub.add_parser(
        name,
        parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help=help,
        description=textwrap.fill(description, 79),
        epilog=epilog,
    )
