"""
``line-ood``: the command line of :mod:`line_plugin`.

Sub-commands:

- ``line-ood benchmark``: LINe against pytorch-ood's post-hoc detectors on the local CIFAR-10
  benchmark (:func:`line_plugin.evaluation.run_benchmark`), printed as AUROC and FPR95 tables;
- ``line-ood fit``: fit LINe for a backbone on a training set and save the state (with the
  backbone's name and the class names) to a file;
- ``line-ood score``: score image files with a saved state, as CSV.

This module parses arguments, loads backbones and data through :mod:`line_plugin.zoo` and
:mod:`line_plugin.data`, calls the public API of :class:`line_plugin.LINe` and prints. Errors
from the package (:class:`ValueError`, :class:`FileNotFoundError`, :class:`KeyError`, ...) end
in one line ``line-ood: error: ...`` on stderr and exit status 1; argparse errors exit with 2.
"""

import argparse
import csv
import io
import pickle
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T
from tqdm.auto import tqdm

from . import __version__, data, zoo
from .detector import LINe
from .presets import PRESETS

PROG = "line-ood"
DEFAULT_BACKBONE = "densenet_bc100"
#: file name endings read by ``score`` when given a folder (case-insensitive)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
#: marks a file written by ``line-ood fit``
STATE_FORMAT = "line-ood state"
STATE_VERSION = 1

#: errors of the package reported as one line, without a traceback
USER_ERRORS = (ValueError, KeyError, NotImplementedError, OSError, RuntimeError)


# -- backbones -----------------------------------------------------------------------------------


@dataclass
class Backbone:
    """
    A loaded classifier split into penultimate features and its linear head.

    :param name: the name it was given by (a :data:`line_plugin.zoo.MODELS` key or
        ``ARCH:CHECKPOINT``)
    :param zoo: the loaded model with its input transform
    :param encoder: images to penultimate features, :math:`B \\times D`
    :param weight: head weight, :math:`K \\times D`
    :param bias: head bias, :math:`K`
    """

    name: str
    zoo: zoo.ZooModel
    encoder: Callable[[Tensor], Tensor]
    weight: Tensor
    bias: Tensor

    @property
    def input_size(self) -> int:
        """side length of the model's input images"""
        return int(self.zoo.spec.get("input_size", 32))


def load_zoo_model(name: str, models_dir: Optional[str] = None) -> zoo.ZooModel:
    """
    :param name: a key of :data:`line_plugin.zoo.MODELS`, or ``ARCH:CHECKPOINT`` (a timm model
        name or ``densenet_bc100``, and a checkpoint file)
    :param models_dir: the shared models folder (default: found by
        :func:`line_plugin.data.default_models_dir`)
    :return: the model in eval mode with its transform
    :raises ValueError: for an unknown name or a checkpoint that does not fit the architecture
    :raises FileNotFoundError: if the checkpoint or the models folder is missing
    """
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
        raise ValueError(f"cannot load {path!r} as a {arch} model: {_first_line(e)}") from e


def split_backbone(model: nn.Module, input_size: int) -> Tuple[Callable, Tensor, Tensor]:
    """
    The classifier as encoder and linear head, by :func:`line_plugin.adapter.split_model`
    (checked on a fixed random batch at the model's input size). Without that module, models with
    ``features`` and an ``fc`` layer (the zoo's DenseNet-BC-100) are split by those.

    :param model: the classifier, on its device
    :param input_size: side length of the probe images
    :return: ``encoder, weight, bias``
    :raises ValueError: if the model cannot be split
    """
    try:
        from .adapter import split_model
    except ImportError:
        return _split_by_attributes(model)
    device = next(model.parameters()).device
    probe = torch.randn(4, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    encoder, weight, bias = split_model(model, probe=probe.to(device))
    return encoder, weight.detach(), bias.detach()


def _split_by_attributes(model: nn.Module) -> Tuple[Callable, Tensor, Tensor]:
    fc = getattr(model, "fc", None)
    if not callable(getattr(model, "features", None)) or not isinstance(fc, nn.Linear):
        raise ValueError(
            f"cannot split {type(model).__name__}: line_plugin.adapter is not available"
        )
    bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features)
    return model.features, fc.weight.detach(), bias.detach()


def load_backbone(name: str, models_dir: Optional[str] = None, device: str = "cpu") -> Backbone:
    """
    Load a backbone (see :func:`load_zoo_model`) and split it (see :func:`split_backbone`).

    :param name: backbone name
    :param models_dir: the shared models folder
    :param device: device to run the model on
    :return: the split backbone
    """
    model = load_zoo_model(name, models_dir)
    model.model.to(device)
    encoder, weight, bias = split_backbone(model.model, int(model.spec.get("input_size", 32)))
    return Backbone(name, model, encoder, weight, bias)


# -- data ----------------------------------------------------------------------------------------


class _ToSize:
    """Resize (shorter side) and center-crop a PIL image to ``size`` unless it has that size."""

    def __init__(self, size: int):
        self.size = size
        self.resize = T.Compose([T.Resize(size), T.CenterCrop(size)])

    def __call__(self, img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        return img if img.size == (self.size, self.size) else self.resize(img)


def image_transform(backbone: Backbone) -> Callable:
    """:return: any PIL image to the backbone's normalised input tensor"""
    return T.Compose([_ToSize(backbone.input_size), backbone.zoo.transform])


def data_root(folder: Optional[str]) -> Path:
    """
    :param folder: ``--data``, or ``None`` for the shared data folder
    :return: the existing data folder
    :raises FileNotFoundError: if it is missing
    """
    if folder is None:
        return data.default_data_dir()
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"data folder {folder!r} does not exist (--data)")
    return Path(folder)


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
    root = data_root(data_dir)
    pack = root / "cifar10_jpeg"
    return data.open_cifar10(pack if pack.is_dir() else root, "train", transform)


def _check_training_source(data_dir: Optional[str], train_folder: Optional[str]) -> None:
    if train_folder is None:
        data_root(data_dir)
    elif not Path(train_folder).is_dir():
        raise FileNotFoundError(f"training folder {train_folder!r} does not exist")


def class_names(dataset: Dataset) -> Optional[List[str]]:
    """:return: the dataset's ``classes`` (followed through subsets), or ``None``"""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


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
            raise ValueError(f"cannot read image {str(path)!r}: {_first_line(e)}") from e


# -- detector state files ------------------------------------------------------------------------


def make_detector(backbone: Backbone, preset: str, **hyperparameters) -> LINe:
    """
    :param backbone: the split backbone
    :param preset: a key of :data:`line_plugin.PRESETS`
    :param hyperparameters: ``p_a``, ``p_w``, ``clip``, ``clip_quantile``, overriding the
        preset's
    :return: the unfitted detector
    :raises ValueError: for an unknown preset or bad values
    """
    detector = LINe.from_preset(preset, backbone.encoder, backbone.weight, backbone.bias)
    return detector.set_hyperparameters(**hyperparameters)


def save_state(
    path: str, detector: LINe, backbone: str, classes: Optional[List[str]], source: str
) -> None:
    """
    Save a fitted detector with the name of its backbone, its class names and its data source.

    :param path: the output file
    :param detector: the fitted detector
    :param backbone: the backbone's name
    :param classes: class names in label order, or ``None``
    :param source: description of the training data
    """
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "backbone": backbone,
        "classes": classes,
        "source": source,
        "line": detector.state_dict(),
    }
    torch.save(state, path)


def read_state(path: str) -> Dict:
    """
    :param path: a file written by :func:`save_state`
    :return: its content
    :raises FileNotFoundError: if the file is missing
    :raises ValueError: if it is no ``line-ood fit`` state
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"state file {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle or zip errors: not a state file
        raise ValueError(f"{path!r} is not a state saved by 'line-ood fit'") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path!r} is not a state saved by 'line-ood fit'")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path!r}: unsupported state version {state.get('version')!r}")
    return state


def check_backbone(state: Dict, name: str, path: str) -> None:
    """
    :param state: from :func:`read_state`
    :param name: the backbone to score with
    :param path: the state file, for the message
    :raises ValueError: if the state was fitted for a shared model of another name; for
        ``ARCH:CHECKPOINT`` names, loading the state checks the head's weights instead
    """
    fitted = state["backbone"]
    if fitted == name or ":" in fitted or ":" in name:
        return
    raise ValueError(
        f"{path!r} was fitted for backbone {fitted!r}, not {name!r}: "
        f"pass --backbone {fitted} or fit again"
    )


# -- computations of the commands ----------------------------------------------------------------


def fit_detector(detector: LINe, dataset: Dataset, args: argparse.Namespace) -> LINe:
    """Fit ``detector`` on ``dataset`` in one streaming pass."""
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    return detector.fit(loader, progress=args.progress)


@torch.no_grad()
def score_files(
    detector: LINe, backbone: Backbone, files: Sequence[Path], args: argparse.Namespace
) -> Tuple[Tensor, Tensor]:
    """
    :return: outlier scores and the classifier's predicted labels of ``files``
    """
    dataset = ImageFiles(files, image_transform(backbone))
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    scores, labels = [], []
    for x, _ in tqdm(loader, desc="score", disable=not args.progress, leave=False):
        z = backbone.encoder(x.to(args.device))
        scores.append(detector.predict_features(z).cpu())
        w, b = backbone.weight.to(z), backbone.bias.to(z)
        labels.append(torch.addmm(b, z, w.T).argmax(dim=1).cpu())
    return torch.cat(scores), torch.cat(labels)


def run_quality_benchmark(model: zoo.ZooModel, data_dir: Path, args: argparse.Namespace):
    """
    The quality benchmark of :func:`line_plugin.evaluation.run_benchmark` at the sizes and with
    the detectors of the arguments.

    :return: its :class:`~line_plugin.evaluation.BenchmarkResult`
    """
    from .evaluation import Sizes, make_detectors, run_benchmark

    if args.detectors is not None:  # checked before the minutes of feature extraction
        known = list(make_detectors(torch.zeros(2, 1), torch.zeros(2)))
        unknown = [name for name in args.detectors if name not in known]
        if unknown:
            raise ValueError(f"unknown detectors {unknown}; known: {', '.join(known)}")

    # without tuning, the validation split is not used: keep it tiny
    val = args.val_samples if args.tune else 20
    sizes = Sizes(
        fit=args.fit_samples,
        val_id=val,
        val_ood=val,
        test_id=args.test_samples,
        test_ood=args.ood_samples,
        seed=args.seed,
    )
    return run_benchmark(
        model,
        sizes=sizes,
        detectors=args.detectors,
        tuned=args.tune,
        ablation=args.ablation,
        ood=args.ood,
        data_dir=data_dir,
        features_dir=args.cache,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=args.progress,
    )


# -- commands ------------------------------------------------------------------------------------


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``line-ood benchmark``: print AUROC and FPR95 tables of the detectors."""
    data_dir = data_root(args.data)
    _check_writable_dir(args.report)
    model = load_zoo_model(args.backbone, args.models)
    if ":" in model.name:  # the name makes report file names: ARCH-FILESTEM, no path
        arch, _, path = model.name.partition(":")
        model.name = f"{arch}-{Path(path).stem}"
    result = run_quality_benchmark(model, data_dir, args)
    print_benchmark(result, sys.stdout)
    if args.report:
        from .evaluation import write_report

        for path in write_report(result, args.report):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """``line-ood fit``: fit LINe on a training set and save its state."""
    _check_output(args.out)
    LINe(None, torch.zeros(1, 1), **_hyperparameters(args))  # bad values fail here, not later
    _check_training_source(args.data, args.train_folder)  # fails before the model is loaded
    backbone = load_backbone(args.backbone, args.models, args.device)
    detector = make_detector(backbone, args.preset, **_hyperparameters(args)).to(args.device)
    dataset = training_set(args.data, args.train_folder, image_transform(backbone))
    source = str(getattr(dataset, "root", None) or args.train_folder or args.data)
    if args.fit_samples is not None:
        dataset = data.subset(dataset, args.fit_samples, seed=args.seed)
    fit_detector(detector, dataset, args)
    save_state(args.out, detector, backbone.name, class_names(dataset), source)
    print(
        f"fitted LINe (p_a={detector.p_a:g}, p_w={detector.p_w:g}, clip={detector.clip}) for "
        f"{backbone.name} on {_plural(len(dataset), 'image')} of {source}; saved {args.out}",
        file=sys.stderr,
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """``line-ood score``: score image files with a saved state, as CSV."""
    state = read_state(args.state)
    name = args.backbone or state["backbone"]
    check_backbone(state, name, args.state)
    files = find_images(args.images)
    _check_output(args.out)
    backbone = load_backbone(name, args.models, args.device)
    detector = LINe(backbone.encoder, backbone.weight, backbone.bias)
    detector.load_state_dict(state["line"]).to(args.device)
    scores, labels = score_files(detector, backbone, files, args)
    classes = state.get("classes")
    if classes is None or len(classes) != len(backbone.weight):
        classes = None
    rows = [
        (str(f), f"{s:.6f}", classes[k] if classes else str(k))
        for f, s, k in zip(files, scores.tolist(), labels.tolist())
    ]
    _write_csv(rows, args.out)
    print(f"scored {_plural(len(rows), 'image')} with {args.state}", file=sys.stderr)
    return 0


# -- printing ------------------------------------------------------------------------------------


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


_METRIC_TITLES = {
    "AUROC": "AUROC % (higher is better)",
    "FPR95": "FPR95 % (OOD accepted when 95 % of ID is kept; lower is better)",
}


def print_metric_table(records: List[Dict], metric: str, out: TextIO) -> None:
    """
    One row per detector, one column per OOD set and their mean; the best value of each column
    is marked with ``*``.

    :param records: benchmark records (``detector``, ``dataset`` and the metric)
    :param metric: ``"AUROC"`` or ``"FPR95"``
    :param out: stream to print to
    """
    detectors = list(dict.fromkeys(r["detector"] for r in records))
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    raw = {(r["detector"], r["dataset"]): 100 * r[metric] for r in records}
    for det in detectors:
        values = [raw[(det, ds)] for ds in datasets if (det, ds) in raw]
        raw[(det, "mean")] = sum(values) / len(values)
    cell = {key: round(value, 1) for key, value in raw.items()}
    columns = datasets + ["mean"]
    pick = max if metric == "AUROC" else min
    best = {c: pick(cell[(d, c)] for d in detectors if (d, c) in cell) for c in columns}
    width = max(len(d) for d in detectors + ["detector"])
    widths = [max(len(c), 6) for c in columns]
    print(f"\n{_METRIC_TITLES.get(metric, metric)}", file=out)
    header = f"{'detector':<{width}}" + "".join(f"  {c:>{w}} " for c, w in zip(columns, widths))
    print(header.rstrip(), file=out)
    for det in detectors:
        line = f"{det:<{width}}"
        for c, w in zip(columns, widths):
            value = cell.get((det, c))
            text = "" if value is None else f"{value:.1f}" + ("*" if value == best[c] else " ")
            line += f"  {text:>{w + 1}}"
        print(line.rstrip(), file=out)


def print_benchmark(result, out: TextIO) -> None:
    """
    Print a header line, the AUROC and FPR95 tables, those of the ablation if it ran, and the
    time taken.

    :param result: a :class:`line_plugin.evaluation.BenchmarkResult`
    :param out: stream to print to
    """
    meta = result.meta
    accuracy = meta.get("test_accuracy")
    head = f"{meta.get('backbone', '?')} on JPEG CIFAR-10"
    if accuracy is not None:
        head += f" (test accuracy {100 * accuracy:.1f} %)"
    counts = ", ".join(f"{k} {v}" for k, v in meta.get("n", {}).items() if not k.startswith("val"))
    print(head + (f"; images: {counts}" if counts else ""), file=out)
    print_metric_table(result.records, "AUROC", out)
    print_metric_table(result.records, "FPR95", out)
    if result.ablation:
        print("\nLINe ablation: clip 1.0, p_a 0.9, p_w 0.9 on or off", file=out)
        print_metric_table(result.ablation, "AUROC", out)
        print_metric_table(result.ablation, "FPR95", out)
    seconds = meta.get("timings_s", {}).get("total")
    if seconds is not None:
        print(f"\n{seconds:.0f} s (features are cached: a second run is faster)", file=out)


# -- arguments -----------------------------------------------------------------------------------


def _count(text: str) -> Optional[int]:
    """``all`` or a positive integer"""
    if text.lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value


def _clip(text: str) -> Optional[float]:
    """``none`` or a number"""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}")


def _device(text: str) -> str:
    """a torch device that is available"""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device is available")
    return text


def _hyperparameters(args: argparse.Namespace) -> Dict:
    """the LINe hyperparameters given on the command line, overriding the preset's"""
    out = {k: getattr(args, k) for k in ("p_a", "p_w", "clip_quantile")}
    out = {k: v for k, v in out.items() if v is not None}
    if args.clip is not _UNSET:
        out["clip"] = args.clip
    return out


_UNSET = object()


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _first_line(error: BaseException) -> str:
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_output(path: Optional[str]) -> None:
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise FileNotFoundError(f"cannot write {path!r}: its folder does not exist")


def _check_writable_dir(path: Optional[str]) -> None:
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise FileExistsError(f"--report {path!r} is a file, not a folder")


def _common(backbone_default: Optional[str]) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    shown = backbone_default or "the one the state was fitted for"
    parent.add_argument(
        "--backbone",
        default=backbone_default,
        metavar="NAME",
        help=f"a shared model ({', '.join(zoo.MODELS)}) or ARCH:CHECKPOINT, a timm model name "
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
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    return parent


def _data_option(parser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data folder with cifar10_jpeg/ and ood32/ (default: $LINE_OOD_DATA or "
        "../shared/data)",
    )


_BENCHMARK_EXAMPLES = """examples:
  line-ood benchmark                                  # DenseNet-BC-100, all detectors
  line-ood benchmark --backbone resnet18 --detectors Energy LINe
  line-ood benchmark --backbone resnet18:my_resnet18.pt --fit-samples 5000
  line-ood benchmark --tune --ablation --report results/   # tables, JSON and plots

Features are cached ($LINE_OOD_CACHE or ~/.cache/line_plugin): a second run with the same
backbone and sizes takes seconds."""

_FIT_EXAMPLES = """examples:
  line-ood fit --backbone densenet_bc100 --out line.pt
  line-ood fit --backbone resnet18 --fit-samples 5000 --p-w 0.5 --out line_resnet18.pt
  line-ood fit --backbone resnet18:model.pt --train-folder train/ --clip-quantile 0.9 --out s.pt

--train-folder takes an image folder (one sub-folder of images per class), torchvision's
CIFAR-10 folder (cifar-10-batches-py) or a JPEG pack folder."""

_SCORE_EXAMPLES = """examples:
  line-ood score --state line.pt images/               # CSV on stdout
  line-ood score --state line.pt --backbone densenet_bc100 a.png b.jpg --out scores.csv

Scores are LINe's: higher means more likely out-of-distribution. The class column is the
classifier's prediction."""


def _add_benchmark(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        parents=[_common(DEFAULT_BACKBONE)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="LINe against pytorch-ood's detectors on the local CIFAR-10 benchmark",
        description=_wrap(
            "Fit LINe (CIFAR-10 preset) and pytorch-ood's post-hoc detectors on the "
            "features of a training subset and print their AUROC and FPR95 on the JPEG CIFAR-10 "
            "test set against each OOD set."
        ),
        epilog=_BENCHMARK_EXAMPLES,
    )
    _data_option(p)
    p.add_argument(
        "--fit-samples", type=_count, default=2000, metavar="N", help="fit images (default: 2000)"
    )
    p.add_argument(
        "--test-samples", type=_count, default=1000, metavar="N", help="ID images (default: 1000)"
    )
    p.add_argument(
        "--ood-samples", type=_count, default=500, metavar="N", help="per OOD set (default: 500)"
    )
    p.add_argument(
        "--ood",
        nargs="+",
        choices=list(data.OOD_SETS),
        default=list(data.OOD_SETS),
        metavar="SET",
        help=f"OOD sets (default: all of {', '.join(data.OOD_SETS)})",
    )
    p.add_argument(
        "--detectors",
        nargs="+",
        metavar="NAME",
        help="detectors, e.g. Energy LINe (default: all: MSP, Energy, ReAct, DICE, ASH, SCALE, "
        "ViM, KNN, Mahalanobis, LINe)",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="add tuned copies (GridSearch on a held-out validation split)",
    )
    p.add_argument(
        "--val-samples",
        type=int,
        default=500,
        metavar="N",
        help="with --tune: ID and synthetic OOD validation images, each (default: 500)",
    )
    p.add_argument("--ablation", action="store_true", help="also print LINe's ablation")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets (default: 0)")
    p.add_argument(
        "--cache", metavar="DIR", help="feature cache (default: $LINE_OOD_CACHE/features)"
    )
    p.add_argument("--report", metavar="DIR", help="also write JSON, Markdown and PNG plots here")
    p.set_defaults(func=cmd_benchmark)


def _add_fit(sub) -> None:
    p = sub.add_parser(
        "fit",
        parents=[_common(DEFAULT_BACKBONE)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="fit LINe for a backbone on a training set and save its state",
        description=_wrap(
            "Fit LINe for a backbone on a training set (the shared JPEG CIFAR-10 "
            "training set by default) and save its state, with the backbone's name and the class "
            "names, for 'line-ood score'."
        ),
        epilog=_FIT_EXAMPLES,
    )
    source = p.add_mutually_exclusive_group()
    _data_option(source)
    source.add_argument("--train-folder", metavar="DIR", help="train on this folder instead")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="cifar10",
        help="the paper's settings (default: cifar10: p_a 0.9, p_w 0.9, clip 1.0)",
    )
    p.add_argument("--p-a", type=float, metavar="F", help="fraction of neurons pruned per class")
    p.add_argument("--p-w", type=float, metavar="F", help="fraction of weights pruned per class")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument(
        "--clip",
        type=_clip,
        default=_UNSET,
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
        type=_count,
        default=None,
        metavar="N",
        help="class-balanced subset of the training set (default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subset (default: 0)")
    _device_option(p)
    p.add_argument("--out", required=True, metavar="STATE.pt", help="output state file")
    p.set_defaults(func=cmd_fit)


def _add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        parents=[_common(None)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="score images with a saved state (CSV: file, score, class)",
        description=_wrap(
            "Score image files (folders are searched recursively) with a state saved "
            "by 'line-ood fit'; CSV with the columns file, score, class."
        ),
        epilog=_SCORE_EXAMPLES,
    )
    p.add_argument("--state", required=True, metavar="STATE.pt", help="from 'line-ood fit'")
    p.add_argument("images", nargs="+", metavar="FOLDER_OR_FILE", help="images to score")
    _device_option(p)
    p.add_argument("--out", metavar="FILE.csv", help="write the CSV here (default: stdout)")
    p.set_defaults(func=cmd_score)


def _wrap(text: str) -> str:
    return textwrap.fill(text, 79)


def _device_option(parser) -> None:
    parser.add_argument(
        "--device", type=_device, default="cpu", help="torch device, e.g. cuda (default: cpu)"
    )


def build_parser() -> argparse.ArgumentParser:
    """:return: the ``line-ood`` argument parser with its sub-commands"""
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="LINe out-of-distribution detection (Ahn et al., CVPR 2023) for timm "
        "backbones, with pytorch-ood.",
        epilog="examples:\n  line-ood benchmark\n  line-ood fit --backbone resnet18 --out s.pt"
        "\n  line-ood score --state s.pt images/\n\n'line-ood COMMAND --help' for more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_benchmark(sub)
    _add_fit(sub)
    _add_score(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run ``line-ood``.

    :param argv: arguments (default: ``sys.argv[1:]``)
    :return: exit status: 0, or 1 after an error (argparse exits with 2 on bad arguments)
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"{PROG}: error: {_first_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
