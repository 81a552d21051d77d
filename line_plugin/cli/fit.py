"""
``line-ood fit``: fit LINe for a backbone on a training set and save its state, with the
backbone's name, the class names and the training data as metadata (the detector's own file
format, :meth:`line_plugin.LINe.save`), for ``line-ood score``.

A share of the training images (``--calibration``) is held out of the fit; their scores set the
threshold of ``line-ood score`` at an ID true-positive rate (``--tpr``, see
:func:`line_plugin.calibration.threshold_at_tpr`), saved in the metadata as ``threshold``,
``tpr`` and ``calibration_images`` (with ``fit_images``).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import LINe, data
from ..calibration import (
    DEFAULT_FRACTION,
    DEFAULT_TPR,
    calibration_split,
    check_fraction,
    check_tpr,
    threshold_at_tpr,
)
from ..plugin.presets import PRESET_NAMES, resolve_preset
from . import common

EXAMPLES = """examples:
  line-ood fit --backbone densenet_bc100 --out line.pt     # preset auto
  line-ood fit --backbone vit_tiny --preset cifar10 --out line.pt
  line-ood fit --backbone vit_tiny --format json --out line.pt
  line-ood fit --backbone resnet18 --fit-samples 5000 --p-w 0.5 --out line_resnet18.pt
  line-ood fit --backbone resnet18:model.pt --train-folder train/ --clip-quantile 0.9 --out s.pt

  line-ood fit --calibration 0.2 --tpr 0.9 --out line.pt   # threshold keeps 90 % of ID
  line-ood fit --calibration 0 --out line.pt                # no threshold

--train-folder takes an image folder (one sub-folder of images per class), torchvision's
CIFAR-10 folder (cifar-10-batches-py) or a JPEG pack folder.

--calibration F holds out F of the training images (of --fit-samples, if given), stratified by
class and chosen by --seed, and fits on the rest; the threshold saved for 'line-ood score' is
the smallest held-out score such that at least --tpr of the held-out scores are at or below
it. Images scoring above it are flagged as out-of-distribution.

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
    common.check_output(args.out)
    LINe(None, torch.zeros(1, 1), **hyperparameters(args))  # bad values fail here, not later
    preset = resolve_preset(args.preset, hyperparameters(args))
    _check_training_source(args.data, args.train_folder)  # fails before the model is loaded
    backbone = common.load_backbone(args.backbone, args.models, args.device)
    detector = make_detector(backbone, preset, **hyperparameters(args)).to(args.device)
    dataset = training_set(args.data, args.train_folder, backbone.transform)
    source = str(getattr(dataset, "root", None) or args.train_folder or args.data)
    if args.fit_samples is not None:
        dataset = data.subset(dataset, args.fit_samples, seed=args.seed)
    fit_set, held_out = calibration_sets(dataset, args.calibration, args.seed)
    loader = DataLoader(fit_set, batch_size=args.batch_size, num_workers=args.workers)
    detector.fit(loader, progress=common.show_progress(args))
    metadata = {"backbone": backbone.name, "classes": class_names(dataset), "source": source}
    metadata["fit_images"] = int(detector.class_counts.sum())  # less what auto held out
    calibrated = ""
    if held_out is not None:
        scores, _ = common.score_dataset(detector, backbone, held_out, args, desc="calibration")
        metadata["threshold"] = threshold_at_tpr(scores, args.tpr)
        metadata["tpr"] = args.tpr
        metadata["calibration_images"] = len(held_out)
        calibrated = (
            f"; threshold {metadata['threshold']:.4f} keeps {100 * args.tpr:g} % of "
            f"{len(held_out)} held-out images"
        )
    metadata["preset"] = preset
    detector.save(args.out, **metadata)
    choice = detector.auto_choice
    if args.format == "json":
        print(json.dumps(fit_summary(detector, metadata, args.out), indent=2))
    elif choice is not None:
        print(choice.summary(), file=sys.stderr)
        if choice.signed:
            print(choice.signed_note(), file=sys.stderr)
    print(
        f"fitted LINe (p_a={detector.p_a:g}, p_w={detector.p_w:g}, clip={detector.clip}) for "
        f"{backbone.name} on {common.plural(metadata['fit_images'], 'image')} of {source}"
        f"{calibrated}; saved {args.out}",
        file=sys.stderr,
    )
    return 0


def fit_summary(detector: LINe, metadata: Dict, out: str) -> Dict:
    """:return: the object of ``--format json`` (see the epilog)"""
    choice = detector.auto_choice
    return {
        "state": str(out),
        **{k: metadata.get(k) for k in ("backbone", "source", "fit_images", "preset")},
        "hyperparameters": {
            "p_a": detector.p_a,
            "p_w": detector.p_w,
            "clip": detector.clip,
            "clip_quantile": detector.clip_quantile,
        },
        "auto": None if choice is None else choice.metadata(),
        **{k: metadata.get(k) for k in ("threshold", "tpr", "calibration_images")},
    }


def calibration_sets(
    dataset: Dataset, fraction: float, seed: int
) -> Tuple[Dataset, Optional[Dataset]]:
    """
    :param dataset: the training images, with labels (see :func:`line_plugin.data.labels_of`)
    :param fraction: share held out for the calibration (``--calibration``); 0: none
    :param seed: seed of the choice (``--seed``)
    :return: the images to fit on and the held-out ones (``None`` if ``fraction`` is 0),
        disjoint and stratified by class (:func:`line_plugin.calibration.calibration_split`)
    :raises ValueError: if the split leaves no image on either side
    """
    if fraction == 0:
        return dataset, None
    fit, held_out = calibration_split(data.labels_of(dataset), len(dataset), fraction, seed)
    return Subset(dataset, fit.tolist()), Subset(dataset, held_out.tolist())


def make_detector(backbone: common.Backbone, preset: Optional[str], **hyperparameters) -> LINe:
    """
    :param backbone: the split backbone
    :param preset: ``"auto"``, a key of :data:`line_plugin.PRESETS`, or ``None`` (the
        constructor's defaults)
    :param hyperparameters: ``p_a``, ``p_w``, ``clip``, ``clip_quantile``, overriding the
        preset's (not with ``"auto"``)
    :return: the unfitted detector
    :raises ValueError: for an unknown preset or bad values
    """
    if preset is None:
        detector = LINe(backbone.encoder, backbone.weight, backbone.bias)
    else:
        detector = LINe.from_preset(preset, backbone.encoder, backbone.weight, backbone.bias)
    return detector.set_hyperparameters(**hyperparameters)


def training_set(
    data_dir: Optional[str], train_folder: Optional[str], transform: Callable
) -> Dataset:
    """
    :param data_dir: data folder holding ``cifar10_jpeg`` (``--data``)
    :param train_folder: an image folder (one sub-folder per class), torchvision's CIFAR-10
        folder or a JPEG pack folder (``--train-folder``); takes precedence over ``data_dir``
    :param transform: applied to every image
    :return: the training set, with ``targets``
    :raises FileNotFoundError: if the folder is missing or holds no training set
    """
    _check_training_source(data_dir, train_folder)
    if train_folder is not None:
        return data.open_cifar10(train_folder, "train", transform)
    root = common.data_root(data_dir)
    pack = root / "cifar10_jpeg"
    return data.open_cifar10(pack if pack.is_dir() else root, "train", transform)


def _check_training_source(data_dir: Optional[str], train_folder: Optional[str]) -> None:
    if train_folder is None:
        common.data_root(data_dir)
    elif not Path(train_folder).is_dir():
        raise FileNotFoundError(f"training folder {train_folder!r} does not exist")


def class_names(dataset: Dataset) -> Optional[List[str]]:
    """:return: the dataset's ``classes`` (followed through subsets), or ``None``"""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def hyperparameters(args: argparse.Namespace) -> Dict:
    """:return: the LINe hyperparameters given on the command line, overriding the preset's"""
    out = {k: getattr(args, k) for k in ("p_a", "p_w", "clip_quantile")}
    out = {k: v for k, v in out.items() if v is not None}
    if args.clip is not UNSET:
        out["clip"] = args.clip
    return out


def _fraction(text: str) -> float:
    """a calibration fraction in [0, 1)"""
    try:
        return check_fraction(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rate(text: str) -> float:
    """a true-positive rate in (0, 1]"""
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
        choices=PRESET_NAMES,
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
    p.add_argument(
        "--calibration",
        type=_fraction,
        default=DEFAULT_FRACTION,
        metavar="F",
        help="share of the training images held out, not fitted on, to set the threshold of "
        f"'line-ood score' (stratified by class; 0: no threshold; default: {DEFAULT_FRACTION})",
    )
    p.add_argument(
        "--tpr",
        type=_rate,
        default=DEFAULT_TPR,
        metavar="R",
        help="the threshold keeps this share of the held-out images: the smallest score with "
        f"at least R of them at or below it (default: {DEFAULT_TPR})",
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
