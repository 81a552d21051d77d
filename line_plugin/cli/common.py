"""
What the sub-commands share: the common options, argument types, one-line errors, loading a
backbone by name and scoring a dataset with it.

Nothing heavy is imported at the top of the CLI's modules: ``line-ood --help``, ``--version``
and argument errors answer without loading torch, timm or pytorch-ood. The names the options
offer (:data:`BACKBONES`, :data:`OOD_SETS`, :data:`PRESETS`) mirror the library's tables, which
a test keeps equal.
"""

import argparse
import pickle
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Tuple

if TYPE_CHECKING:  # imported where used: they load torch
    from torch import Tensor

    from ..adapter import Split
    from ..zoo import ZooModel

PROG = "line-ood"
DEFAULT_BACKBONE = "densenet_bc100"
#: the shared models (:data:`line_plugin.zoo.MODELS`)
BACKBONES = ("densenet_bc100", "densenet_bc100_dice", "resnet18", "vit_tiny", "convnext_atto")
#: the OOD sets (:data:`line_plugin.data.OOD_SETS`)
OOD_SETS = ("dtd", "imagenet", "mnist", "fashion_mnist")
#: the presets (:data:`line_plugin.plugin.presets.PRESET_NAMES`: "auto" and the paper's)
PRESETS = ("auto", "cifar10", "cifar100", "imagenet")

#: errors of the package reported as one line, without a traceback
USER_ERRORS = (ValueError, KeyError, NotImplementedError, OSError, RuntimeError)


# -- backbones -----------------------------------------------------------------------------------


def load_zoo_model(name: str, models_dir: Optional[str] = None) -> "ZooModel":
    """
    :param name: a key of :data:`line_plugin.zoo.MODELS`, or ``ARCH:CHECKPOINT`` (a timm model
        name or ``densenet_bc100``, and a checkpoint file)
    :param models_dir: the shared models folder (default: found by
        :func:`line_plugin.data.default_models_dir`)
    :return: the model in eval mode with its transform
    :raises ValueError: for an unknown name or a checkpoint that does not fit the architecture
    :raises FileNotFoundError: if the checkpoint or the models folder is missing
    """
    from .. import zoo

    if name in zoo.MODELS:
        if models_dir is not None and not Path(models_dir).is_dir():
            raise FileNotFoundError(f"models folder {models_dir!r} does not exist (--models)")
        return zoo.load_model(name, models_dir)
    arch, sep, path = name.partition(":")
    if not sep or not arch or not path:
        raise ValueError(
            f"unknown backbone {name!r}; use one of {', '.join(zoo.MODELS)} "
            "or ARCH:CHECKPOINT (e.g. resnet18:model.pt)"
        )
    try:
        return zoo.load_checkpoint(arch, path, name=name)
    except (ValueError, RuntimeError, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(f"cannot load {path!r} as a {arch} model: {first_line(e)}") from e


def load_backbone(
    name: str, models_dir: Optional[str] = None, device: str = "cpu"
) -> Tuple["ZooModel", "Split"]:
    """
    Load a backbone (see :func:`load_zoo_model`) and split it
    (:func:`line_plugin.zoo.split_backbone`).

    :param name: backbone name
    :param models_dir: the shared models folder
    :param device: device to run the model on
    :return: the model with its transform, and its split into encoder and linear head
    """
    from .. import zoo

    model = load_zoo_model(name, models_dir)
    model.model.to(device)
    return model, zoo.split_backbone(model)


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


def score_batches(
    detector, split: "Split", dataset, args: argparse.Namespace, desc: str = "score"
) -> Iterator[Tuple["Tensor", "Tensor", "Tensor"]]:
    """
    Score a dataset batch by batch: the features by
    :func:`line_plugin.evaluation.features.feature_batches`, then the detector and the head.

    :param detector: a fitted :class:`line_plugin.LINe` for the backbone
    :param split: the backbone's encoder and head
    :param dataset: of ``(image tensor, label)``
    :param args: with ``batch_size``, ``workers``, ``device`` and ``quiet``
    :param desc: progress bar label (a bar only on a terminal, see :func:`show_progress`)
    :return: an iterator of outlier scores, the classifier's predicted labels and the dataset's
        labels, :math:`B` each, per batch in the dataset's order
    """
    import torch

    from ..evaluation.features import feature_batches

    weight, bias = split.weight.to(args.device), split.bias.to(args.device)
    batches = feature_batches(
        split.encoder,
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        desc=desc,
        progress=show_progress(args),
    )
    for z, y in batches:
        with torch.no_grad():
            z = z.to(args.device)
            scores = detector.predict_features(z).cpu()
            labels = torch.addmm(bias, z, weight.T).argmax(dim=1).cpu()
        yield scores, labels, y


def score_dataset(
    detector, split: "Split", dataset, args: argparse.Namespace, desc: str = "score"
) -> "Tensor":
    """:return: the outlier scores of a whole dataset (see :func:`score_batches`)"""
    import torch

    scores = [s for s, _, _ in score_batches(detector, split, dataset, args, desc)]
    return torch.cat(scores) if scores else torch.zeros(0)


# -- checks and messages -------------------------------------------------------------------------


def plural(n: int, noun: str) -> str:
    """:return: ``"1 image"``, ``"2 images"``"""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def first_line(error: BaseException) -> str:
    """:return: the first line of an error's message (a :class:`KeyError` without quotes)"""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(error).__name__


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
        help=f"a shared model ({', '.join(BACKBONES)}) or ARCH:CHECKPOINT, a timm model name "
        f"and a checkpoint file (default: {shown})",
    )
    parent.add_argument(
        "--models",
        metavar="DIR",
        help="shared models folder (default: $LINE_OOD_MODELS or ../shared/models)",
    )
    parent.add_argument(
        "--batch-size", type=int, default=250, metavar="N", help="images per batch (default: 250)"
    )
    parent.add_argument(
        "--workers", type=int, default=0, metavar="N", help="data loader processes (default: 0)"
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
