"""
``line-ood fit``: fit LINe for a backbone on a training set and save its state, with the
backbone's name, the class names and the training data as metadata (the detector's own file
format, :meth:`line_plugin.LINe.save`), for ``line-ood score``.

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
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from ..calibration import DEFAULT_FRACTION, DEFAULT_TPR
from . import common

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from .. import LINe
    from ..adapter import Split


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

#: the warning of a threshold calibrated on training images
TRAINING_WARNING = (
    "warning: the threshold is calibrated on held-out training images, which the backbone was "
    "trained on: new in-distribution images may be flagged more often than {rate:g} %; "
    "pass --calibration-folder DIR with in-distribution images it has not seen"
)


def run(args: argparse.Namespace) -> int:
    """``line-ood fit``: fit LINe on a training set, calibrate its threshold, save its state."""
    from torch.utils.data import DataLoader

    from .. import data

    common.check_output(args.out)
    from ..plugin.presets import resolve_preset

    preset = resolve_preset(args.preset, hyperparameters(args))  # before anything is loaded
    check_training_source(args.data, args.train_folder)  # all fails before the model is loaded
    unseen = None
    if args.calibration_folder is not None:
        unseen = data.find_images([args.calibration_folder])
    model, split = common.load_backbone(args.backbone, args.models, args.device)
    detector = make_detector(split, preset, **hyperparameters(args)).to(args.device)
    dataset = training_set(args.data, args.train_folder, model.transform)
    source = str(getattr(dataset, "root", None) or args.train_folder or args.data)
    if args.fit_samples is not None:
        dataset = data.subset(dataset, args.fit_samples, seed=args.seed)
    fraction = 0.0 if unseen is not None else args.calibration
    fit_set, held_out = calibration_sets(dataset, fraction, args.seed)
    loader = DataLoader(fit_set, batch_size=args.batch_size, num_workers=args.workers)
    detector.fit(loader, progress=common.show_progress(args))
    metadata = {"backbone": model.name, "classes": class_names(dataset), "source": source}
    metadata["fit_images"] = int(detector.class_counts.sum())  # less what auto held out
    calibrated = ""
    if unseen is not None:
        images = data.ImageFiles(unseen, model.transform, int(model.spec.get("input_size", 32)))
        metadata.update(calibrate(detector, split, images, "folder", args))
        calibrated = f"{len(images)} images of {args.calibration_folder}"
    elif held_out is not None:
        metadata.update(calibrate(detector, split, held_out, "training", args))
        calibrated = f"{len(held_out)} held-out training images"
    if calibrated:
        calibrated = (
            f"; threshold {metadata['threshold']:.4f} keeps {100 * args.tpr:g} % of {calibrated}"
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
        f"{model.name} on {common.plural(metadata['fit_images'], 'image')} of {source}"
        f"{calibrated}; saved {args.out}",
        file=sys.stderr,
    )
    if metadata.get("calibration_source") == "training":
        rate = round(100 * (1 - args.tpr), 6)
        print(f"{common.PROG}: {TRAINING_WARNING.format(rate=rate)}", file=sys.stderr)
    return 0


def calibrate(detector: "LINe", split: "Split", images: "Dataset", origin: str, args) -> Dict:
    """
    :param detector: the fitted detector
    :param split: the backbone's encoder and head
    :param images: the calibration images (see :func:`calibration_scores`)
    :param origin: ``"folder"`` (``--calibration-folder``) or ``"training"`` (held out)
    :param args: with ``tpr``, ``calibration_folder`` and the options of scoring
    :return: the metadata of the threshold: ``threshold``, ``tpr``, ``calibration_source``,
        ``calibration_images``, ``calibration_folder`` (from a folder) and
        ``calibration_scores``
    """
    from ..calibration import threshold_at_tpr

    scores = calibration_scores(detector, split, images, args)
    out = {"threshold": threshold_at_tpr(scores, args.tpr), "tpr": args.tpr}
    out.update(calibration_source=origin, calibration_images=len(scores))
    if origin == "folder":
        out["calibration_folder"] = str(args.calibration_folder)
    out["calibration_scores"] = scores.tolist()
    return out


def calibration_scores(detector: "LINe", split: "Split", images: "Dataset", args):
    """
    :param detector: the fitted detector
    :param split: the backbone's encoder and head
    :param images: calibration images: held-out training images, or
        :class:`line_plugin.data.ImageFiles` (whose status 1 marks a file that cannot be read)
    :param args: with ``batch_size``, ``workers``, ``device`` and ``quiet``
    :return: their outlier scores, :math:`n`
    :raises ValueError: if a calibration image cannot be read (a calibration must see every
        image it promises for)
    """
    import torch

    from .. import data

    scores = []
    for batch, _, status in common.score_batches(detector, split, images, args, "calibration"):
        if isinstance(images, data.ImageFiles) and bool(status.any()):
            item = len(torch.cat(scores)) if scores else 0
            item += int(status.nonzero()[0])
            path = str(images.files[item])
            raise ValueError(f"cannot read calibration image {path!r}: {images.error(item)}")
        scores.append(batch)
    return torch.cat(scores)


def fit_summary(detector: "LINe", metadata: Dict, out: str) -> Dict:
    """:return: the object of ``--format json`` (see the epilog)"""
    choice = detector.auto_choice
    return {
        "state": str(out),
        **{k: metadata.get(k) for k in ("backbone", "source", "fit_images", "preset")},
        "hyperparameters": detector.hyperparameters,
        "auto": None if choice is None else choice.metadata(),
        **{k: metadata.get(k) for k in ("threshold", "tpr", "calibration_images")},
        "calibration_source": metadata.get("calibration_source"),
    }


def calibration_sets(
    dataset: "Dataset", fraction: float, seed: int
) -> Tuple["Dataset", Optional["Dataset"]]:
    """
    :param dataset: the training images, with labels (see :func:`line_plugin.data.labels_of`)
    :param fraction: share held out for the calibration (``--calibration``); 0: none
    :param seed: seed of the choice (``--seed``)
    :return: the images to fit on and the held-out ones (``None`` if ``fraction`` is 0),
        disjoint and stratified by class (:func:`line_plugin.calibration.calibration_split`)
    :raises ValueError: if the split leaves no image on either side
    """
    from torch.utils.data import Subset

    from .. import data
    from ..calibration import calibration_split

    if fraction == 0:
        return dataset, None
    fit, held_out = calibration_split(data.labels_of(dataset), len(dataset), fraction, seed)
    return Subset(dataset, fit.tolist()), Subset(dataset, held_out.tolist())


def make_detector(split: "Split", preset: Optional[str], **hyperparameters) -> "LINe":
    """
    :param split: the backbone's encoder and head
    :param preset: ``"auto"``, a key of :data:`line_plugin.PRESETS`, or ``None`` (the
        constructor's defaults)
    :param hyperparameters: ``p_a``, ``p_w``, ``clip``, ``clip_quantile``, overriding the
        preset's (not with ``"auto"``)
    :return: the unfitted detector
    :raises ValueError: for an unknown preset or bad values (the library's own checks)
    """
    from .. import LINe

    encoder, weight, bias = split.encoder, split.weight, split.bias
    if preset is None:
        detector = LINe(encoder, weight, bias)
    else:
        detector = LINe.from_preset(preset, encoder, weight, bias)
    return detector.set_hyperparameters(**hyperparameters)


def training_set(
    data_dir: Optional[str], train_folder: Optional[str], transform: Callable
) -> "Dataset":
    """
    :param data_dir: data folder holding ``cifar10_jpeg`` (``--data``), checked by
        :func:`check_training_source`
    :param train_folder: an image folder (one sub-folder per class), torchvision's CIFAR-10
        folder or a JPEG pack folder (``--train-folder``); takes precedence over ``data_dir``
    :param transform: applied to every image
    :return: the training set, with ``targets``
    :raises FileNotFoundError: if the folder holds no training set
    """
    from .. import data

    if train_folder is not None:
        return data.open_cifar10(train_folder, "train", transform)
    root = common.data_root(data_dir)
    pack = root / "cifar10_jpeg"
    return data.open_cifar10(pack if pack.is_dir() else root, "train", transform)


def check_training_source(data_dir: Optional[str], train_folder: Optional[str]) -> None:
    """:raises FileNotFoundError: if the training folder or the data folder is missing"""
    if train_folder is None:
        common.data_root(data_dir)
    elif not Path(train_folder).is_dir():
        raise FileNotFoundError(f"training folder {train_folder!r} does not exist")


def class_names(dataset: "Dataset") -> Optional[List[str]]:
    """:return: the dataset's ``classes`` (followed through subsets), or ``None``"""
    from torch.utils.data import Subset

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
        choices=list(common.PRESETS),
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
