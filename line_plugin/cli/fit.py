"""
``line-ood fit``: fit LINe for a backbone on a training set and save its state, with the
backbone's name, the class names and the training data as metadata (the detector's own file
format, :meth:`line_plugin.LINe.save`), for ``line-ood score``: a thin shell over
:class:`line_plugin.Pipeline` (``from_backbone``, ``fit``, ``calibrate``, ``save``).

The threshold of ``line-ood score`` keeps an ID true-positive rate (``--tpr``, see
:func:`line_plugin.calibration.threshold_at_tpr`) of calibration images: in-distribution images
the backbone has not seen (``--calibration-folder``), or a share of the training images held out
of the fit (``--calibration``), which the backbone was trained on, so that new images may be
flagged more often than promised (a warning says so). The metadata holds ``threshold``, ``tpr``,
``calibration_source`` (``"folder"`` or ``"training"``), ``calibration_images`` and the
calibration scores (``calibration_scores``, for the report of ``line-ood score``), with
``fit_images``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

from ..calibration import DEFAULT_FRACTION, DEFAULT_TPR
from ..messages import plural
from ..plugin.presets import PRESET_NAMES
from . import common

if TYPE_CHECKING:
    from ..pipeline import Pipeline


EXAMPLES = """examples:
  line-ood fit --backbone densenet_bc100 --out line.pt     # preset auto
  line-ood fit --backbone vit_tiny --preset cifar10 --out line.pt
  line-ood fit --backbone vit_tiny --format json --out line.pt
  line-ood fit --backbone resnet18 --fit-samples 5000 --p-w 0.5 --out line_resnet18.pt
  line-ood fit --backbone resnet18:model.pt --train-folder train/ --clip-quantile 0.9 --out s.pt

  line-ood fit --calibration-folder unseen/ --out line.pt  # threshold on unseen ID images
  line-ood fit --calibration 0.2 --tpr 0.9 --out line.pt   # ... on held-out training images
  line-ood fit --calibration 0 --out line.pt                # no threshold

--train-folder takes an image folder (one sub-folder of images per class), torchvision's
CIFAR-10 folder (cifar-10-batches-py) or a JPEG pack folder.

The threshold saved for 'line-ood score' is the smallest calibration score such that at least
--tpr of the calibration scores are at or below it; images scoring above it are flagged as
out-of-distribution. With n calibration images exchangeable with the new in-distribution
images (drawn from the same distribution, and equally unseen by the backbone), the expected
share of new in-distribution images flagged is at most 1 - tpr + 1/(n+1).

--calibration-folder DIR calibrates on the images of DIR (searched recursively; labels are not
needed): in-distribution images that neither the backbone nor the fit has seen, such as a
validation set. LINe is fitted on all the training images.

Without it, --calibration F holds out F of the training images (of --fit-samples, if given),
stratified by class and chosen by --seed, and fits on the rest. The backbone was trained on
those images and is more confident on them than on new ones, so new images may be flagged
more often than promised (measured on CIFAR-10 test images: resnet18 15 % instead of 5 %,
docs/cli.md); fit warns.

Without --preset, --p-a, --p-w, --clip or --clip-quantile, the preset is 'auto': every 10th
fit image (at most 1,000) is held out, and p_a, p_w and clip are chosen by the AUROC of those
images against synthetic outliers made from them (tiles shuffled, noise); Energy (no pruning)
unless another setting gains a clear margin. No OOD data is used. The choice and its reason are
printed and saved in the state's metadata ("auto"). A paper preset (--preset cifar10, ...) or
explicit hyperparameters fix the setting instead.

--format json writes one object to stdout: {"state", "backbone", "source", "fit_images",
"preset", "hyperparameters": {"p_a", "p_w", "clip", "clip_quantile"}, "auto" (the choice:
"name", "reason", "summary", "val_auroc", "held_out", "signed_share", "signed_note", ...; null
for other presets), "threshold", "tpr", "calibration_images"}."""

#: default of ``--clip``: not given (``None`` means "no clipping")
UNSET = object()


def run(args: argparse.Namespace) -> int:
    """``line-ood fit``: fit LINe on a training set, calibrate its threshold, save its state."""
    from .. import data
    from ..pipeline import Pipeline
    from ..plugin.presets import resolve_preset

    # every mistake that can be seen before the model is loaded fails first
    common.check_output(args.out)
    given = hyperparameters(args)
    resolve_preset(args.preset, given)
    source = training_source(args.data, args.train_folder)
    if args.calibration_folder is not None:
        data.find_images([args.calibration_folder])
    pipe = Pipeline.from_backbone(args.backbone, models_dir=args.models, device=args.device)
    progress = common.show_progress(args)
    options = {"batch_size": args.batch_size, "workers": args.workers, "progress": progress}
    held_out = 0.0 if args.calibration_folder is not None else args.calibration
    pipe.fit(
        source,
        args.preset,
        fit_samples=args.fit_samples,
        calibration=held_out,
        tpr=args.tpr,
        seed=args.seed,
        **options,
        **given,
    )
    if args.calibration_folder is not None:
        pipe.calibrate(args.calibration_folder, args.tpr, **options)
    pipe.save(args.out)
    print_summary(pipe, args.out, args.format)
    return 0


def print_summary(pipe: "Pipeline", out: str, format: str) -> None:
    """print what was fitted: the text summary on stderr, or ``--format json`` on stdout"""
    detector, metadata, calibration = pipe.detector, pipe.metadata, pipe.calibration
    choice = detector.auto_choice
    if format == "json":
        print(json.dumps(fit_summary(pipe, out), indent=2))
    elif choice is not None:
        print(choice.summary(), file=sys.stderr)
        if choice.signed:
            print(choice.signed_note(), file=sys.stderr)
    calibrated = "" if calibration is None else f"; {calibration.summary()}"
    print(
        f"fitted LINe (p_a={detector.p_a:g}, p_w={detector.p_w:g}, clip={detector.clip}) for "
        f"{metadata.backbone} on {plural(metadata.fit_images, 'image')} of {metadata.source}"
        f"{calibrated}; saved {out}",
        file=sys.stderr,
    )
    caveat = None if calibration is None else calibration.caveat()
    if caveat is not None:
        print(f"{common.PROG}: warning: {caveat}", file=sys.stderr)


def fit_summary(pipe: "Pipeline", out: str) -> Dict:
    """:return: the object of ``--format json`` (see the epilog)"""
    metadata, calibration = pipe.metadata, pipe.calibration
    return {
        "state": str(out),
        "backbone": metadata.backbone,
        "source": metadata.source,
        "fit_images": metadata.fit_images,
        "preset": metadata.preset,
        "hyperparameters": pipe.detector.hyperparameters,
        "auto": metadata.auto,
        "threshold": None if calibration is None else calibration.threshold,
        "tpr": None if calibration is None else calibration.tpr,
        "calibration_images": None if calibration is None else calibration.images,
        "calibration_source": None if calibration is None else calibration.source,
    }


def training_source(data_dir: Optional[str], train_folder: Optional[str]) -> Path:
    """
    :param data_dir: the data folder holding ``cifar10_jpeg`` (``--data``; default: the shared
        one)
    :param train_folder: an image folder (one sub-folder per class), torchvision's CIFAR-10
        folder or a JPEG pack folder (``--train-folder``); takes precedence over ``data_dir``
    :return: the folder to fit on
    :raises FileNotFoundError: if the training folder or the data folder is missing
    """
    from ..pipeline.sources import training_folder

    if train_folder is not None:
        return training_folder(train_folder)
    root = common.data_root(data_dir)
    pack = root / "cifar10_jpeg"
    return pack if pack.is_dir() else root


def hyperparameters(args: argparse.Namespace) -> Dict:
    """:return: the LINe hyperparameters given on the command line, overriding the preset's"""
    out = {k: getattr(args, k) for k in ("p_a", "p_w", "clip_quantile")}
    out = {k: v for k, v in out.items() if v is not None}
    if args.clip is not UNSET:
        out["clip"] = args.clip
    return out


def _fraction(text: str) -> float:
    """a calibration fraction in [0, 1)"""
    from ..calibration import check_fraction

    try:
        return check_fraction(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rate(text: str) -> float:
    """a true-positive rate in (0, 1]"""
    from ..calibration import check_tpr

    try:
        return check_tpr(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _clip(text: str) -> Optional[float]:
    """``none`` or a number"""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}")


def add_parser(sub) -> None:
    """add ``fit`` to the sub-command parsers ``sub``"""
    p = common.add_command(
        sub,
        "fit",
        help="fit LINe for a backbone on a training set and save its state",
        description="Fit LINe for a backbone on a training set (the shared JPEG CIFAR-10 "
        "training set by default) and save its state, with the backbone's name and the class "
        "names, for 'line-ood score'.",
        epilog=EXAMPLES,
        parents=[common.common_options(common.DEFAULT_BACKBONE)],
    )
    source = p.add_mutually_exclusive_group()
    common.data_option(source)
    source.add_argument("--train-folder", metavar="DIR", help="train on this folder instead")
    p.add_argument(
        "--preset",
        choices=list(PRESET_NAMES),
        default=None,
        help="auto: chosen from the training data (the default without --p-a, --p-w, --clip, "
        "--clip-quantile); or the paper's settings (cifar10: p_a 0.9, p_w 0.9, clip 1.0)",
    )
    p.add_argument("--p-a", type=float, metavar="F", help="fraction of neurons pruned per class")
    p.add_argument("--p-w", type=float, metavar="F", help="fraction of weights pruned per class")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument(
        "--clip",
        type=_clip,
        default=UNSET,
        metavar="C",
        help="absolute clipping threshold of the features, or 'none'",
    )
    clip.add_argument(
        "--clip-quantile",
        type=float,
        metavar="Q",
        help="fit the clip as this quantile of the training activations (as ReAct)",
    )
    p.add_argument(
        "--fit-samples",
        type=common.count,
        default=None,
        metavar="N",
        help="class-balanced subset of the training set, held-out images included (default: all)",
    )
    calibration = p.add_mutually_exclusive_group()
    calibration.add_argument(
        "--calibration-folder",
        metavar="DIR",
        help="set the threshold of 'line-ood score' on the images of DIR: in-distribution "
        "images the backbone has not seen (LINe is fitted on all the training images)",
    )
    calibration.add_argument(
        "--calibration",
        type=_fraction,
        default=DEFAULT_FRACTION,
        metavar="F",
        help="without --calibration-folder: share of the training images held out, not "
        "fitted on, to set the threshold (stratified by class; 0: no threshold; default: "
        f"{DEFAULT_FRACTION}); warns that new images may be flagged more often",
    )
    p.add_argument(
        "--tpr",
        type=_rate,
        default=DEFAULT_TPR,
        metavar="R",
        help="the threshold keeps this share of the calibration images: the smallest score "
        f"with at least R of them at or below it (default: {DEFAULT_TPR})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the subset and the held-out images (default: 0)",
    )
    common.device_option(p)
    p.add_argument("--out", required=True, metavar="STATE.pt", help="output state file")
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a summary on stderr; json: the fit and the auto choice as one JSON object "
        "on stdout (default: text)",
    )
    p.set_defaults(func=run)
