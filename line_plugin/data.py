"""
Readers for the local benchmark data as :class:`torch.utils.data.Dataset` objects.

The data lies in a shared, read-only folder (``../shared/data`` beside the repository, or
``$LINE_OOD_DATA``): CIFAR-10 as JPEG packs (:class:`CIFAR10JPEG`) and the out-of-distribution sets
as ``npz`` arrays (:class:`NpzImages`, :data:`OOD_SETS`). Users with the original datasets can
point
:func:`open_cifar10` at torchvision's CIFAR-10 folder or at an image folder instead.

Image files to score: :func:`find_images` collects them from folders, :func:`read_image` reads
one as RGB or says in one line why it cannot, and :class:`ImageFiles` is a dataset of them in
which a file that cannot be read is marked instead of stopping the data loader.
"""

import functools
import io
import lzma
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from .catalog import OOD_SETS  # the table of the OOD sets, torch-free

PathLike = Union[str, os.PathLike]

#: CIFAR-10 class names, in label order (the torchvision order).
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

#: Readable names of the sets in :data:`OOD_SETS`.
OOD_TITLES: Dict[str, str] = {
    "dtd": "Textures (DTD, 10 classes)",
    "imagenet": "ImageNet-1k sample",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
}

_REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir(kind: str = "data") -> Path:
    """
    Locate a folder of the shared material: ``data`` or ``models``.

    The folder is taken from ``$LINE_OOD_DATA`` (``$LINE_OOD_MODELS``) if set, else
    ``../shared/<kind>`` relative to the repository root, else ``../shared/<kind>`` relative to
    the current working directory.

    :param kind: ``"data"`` or ``"models"``
    :return: the existing folder
    :raises ValueError: for another ``kind``
    :raises FileNotFoundError: if no candidate exists; the message names the paths tried
    """
    if kind not in ("data", "models"):
        raise ValueError(f"kind must be 'data' or 'models', got {kind!r}")
    env = f"LINE_OOD_{kind.upper()}"
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        if path.is_dir():
            return path
        raise FileNotFoundError(f"${env} is set to {str(path)!r}, which is not a folder")
    tried = [_REPO_ROOT.parent / "shared" / kind, Path.cwd().parent / "shared" / kind]
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"No {kind} folder found; tried {', '.join(repr(str(p)) for p in tried)}. "
        f"Set ${env} to the folder holding the {kind}."
    )


def default_data_dir() -> Path:
    """
    :return: the shared data folder (see :func:`shared_dir`)
    :raises FileNotFoundError: if it cannot be found
    """
    return shared_dir("data")


def default_models_dir() -> Path:
    """
    :return: the shared models folder (see :func:`shared_dir`)
    :raises FileNotFoundError: if it cannot be found
    """
    return shared_dir("models")


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"Missing data file {str(path)!r}")
    return path


@functools.lru_cache(maxsize=4)
def _read_pack(pack: str, index: str) -> Tuple[bytes, np.ndarray, np.ndarray]:
    # decompressed once per process and path; never written to disk
    meta = np.load(index)
    lens = meta["lens"].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    with lzma.open(pack, "rb") as f:
        blob = f.read()
    if len(blob) != offsets[-1]:
        raise ValueError(f"{pack}: {len(blob)} bytes, but the index sums to {offsets[-1]}")
    return blob, offsets, meta["labels"].astype(np.int64)


class CIFAR10JPEG(Dataset):
    """
    CIFAR-10 stored as a JPEG pack: ``SPLIT.jpegs.xz`` (the concatenated JPEG files, xz-compressed)
    and ``SPLIT.index.npz`` (``lens``: bytes per file, ``labels``).

    The pack is decompressed once per process and kept in memory; images are decoded lazily.

    :param root: folder with the pack; default ``<data>/cifar10_jpeg``
    :param split: ``"train"`` (50,000 images) or ``"test"`` (10,000)
    :param transform: applied to the RGB :class:`PIL.Image.Image`
    :param indices: optional subset (positions in the split), in the given order
    :raises ValueError: for an unknown split
    :raises FileNotFoundError: if the pack is missing
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        split: str = "train",
        transform: Optional[Callable] = None,
        indices: Optional[Sequence[int]] = None,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root = Path(root) if root is not None else default_data_dir() / "cifar10_jpeg"
        self.root = root
        self.split = split
        self.transform = transform
        pack = _require(root / f"{split}.jpegs.xz")
        index = _require(root / f"{split}.index.npz")
        self._blob, self._offsets, labels = _read_pack(str(pack), str(index))
        n = len(labels)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"indices out of range for {n} images")
        #: class label of each item (a list, as in torchvision)
        self.targets: List[int] = labels[self.indices].tolist()
        self.classes = list(CIFAR10_CLASSES)

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, item: int) -> Image.Image:
        """
        :param item: position in this dataset
        :return: the decoded RGB image
        """
        i = self.indices[item]
        data = self._blob[self._offsets[i] : self._offsets[i + 1]]
        return Image.open(io.BytesIO(data)).convert("RGB")

    def __getitem__(self, item: int) -> Tuple[object, int]:
        img = self.image(item)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[item]


class NpzImages(Dataset):
    """
    Images stored as a ``uint8`` array ``x`` (:math:`N \\times H \\times W \\times 3`, RGB) in an
    ``npz`` file, e.g. the out-of-distribution sets of :data:`OOD_SETS`.

    :param path: the ``npz`` file, or a key of :data:`OOD_SETS`
    :param transform: applied to the :class:`PIL.Image.Image`
    :param label: label of every image; ``-1`` marks OOD samples in :mod:`pytorch_ood`
    :raises FileNotFoundError: if the file is missing
    """

    def __init__(self, path: PathLike, transform: Optional[Callable] = None, label: int = -1):
        if str(path) in OOD_SETS:
            path = default_data_dir() / OOD_SETS[str(path)]
        self.path = _require(Path(path))
        with np.load(self.path) as f:
            self.x = f["x"]
            self.names = f["names"] if "names" in f.files else None
        if self.x.ndim != 4 or self.x.shape[-1] != 3 or self.x.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected uint8 N x H x W x 3, got {self.x.shape}")
        self.transform = transform
        self.label = int(label)
        self.targets: List[int] = [self.label] * len(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, item: int) -> Tuple[object, int]:
        img = Image.fromarray(self.x[item])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.label


def ood_set(name: str, transform: Optional[Callable] = None, data_dir=None) -> NpzImages:
    """
    :param name: a key of :data:`OOD_SETS`
    :param transform: applied to each image
    :param data_dir: data folder; default :func:`default_data_dir`
    :return: the set, every label ``-1``
    :raises KeyError: for an unknown name (the message lists the known ones)
    """
    if name not in OOD_SETS:
        raise KeyError(f"Unknown OOD set {name!r}; known: {', '.join(OOD_SETS)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return NpzImages(root / OOD_SETS[name], transform=transform)


#: file name endings of the images :func:`find_images` collects from folders (case-insensitive)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

#: what Pillow raises for a file it cannot decode: no image (``UnidentifiedImageError`` is an
#: ``OSError``), a truncated one (``OSError``), a corrupt header (``SyntaxError``, ``ValueError``),
#: or one too large (``DecompressionBombError``)
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def find_images(paths: Sequence[PathLike]) -> List[Path]:
    """
    :param paths: image files and folders (searched recursively for :data:`IMAGE_EXTENSIONS`)
    :return: the image files, in the order given, each folder's contents sorted
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
            raise FileNotFoundError(f"no such file or folder: {str(name)!r}")
    if not found:
        names = ", ".join(str(p) for p in paths)
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {names}")
    return found


def read_image(path: PathLike) -> Image.Image:
    """
    :param path: an image file (any mode Pillow reads: grayscale, RGBA, palette, 16-bit, ...)
    :return: the image, decoded in full, as RGB
    :raises ValueError: if it cannot be read or decoded, naming the file and the reason (an empty
        file, a file that is no image, a truncated one)
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except _UNREADABLE as e:
        raise ValueError(f"cannot read image {str(path)!r}: {_reason(path, e)}") from e


def _reason(path: PathLike, error: BaseException) -> str:
    """why Pillow could not read ``path``, in a few words without the path"""
    if isinstance(error, OSError) and os.path.isfile(path) and os.path.getsize(path) == 0:
        return "empty file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file (its format is not recognised)"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class ImageFiles(Dataset):
    """
    Image files as a dataset of ``(tensor, status)``: status 0 for an image read, 1 for a file
    that could not be read (then the tensor is a zero placeholder of the transform's shape, so
    that a batch holding it still stacks, in data loader workers as well);
    :meth:`error` gives the reason.

    :param files: image paths
    :param transform: RGB PIL image to tensor
    :param placeholder_size: side of the blank image whose transform is the placeholder
    """

    def __init__(self, files: Sequence[PathLike], transform: Callable, placeholder_size: int = 32):
        self.files = [Path(f) for f in files]
        self.transform = transform
        blank = Image.new("RGB", (placeholder_size, placeholder_size))
        self._placeholder = torch.zeros_like(transform(blank))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int) -> Tuple[torch.Tensor, int]:
        try:
            img = read_image(self.files[item])
        except ValueError:
            return self._placeholder, 1
        return self.transform(img), 0

    def error(self, item: int) -> Optional[str]:
        """
        :param item: position
        :return: why the file cannot be read, in a few words (``empty file``, ``not an image
            file ...``, Pillow's message for a truncated one), or ``None`` if it can
        """
        try:
            read_image(self.files[item])
        except ValueError as e:
            return _reason(self.files[item], e.__cause__ or e)
        return None


def image_folder(path: PathLike, transform: Optional[Callable] = None) -> Dataset:
    """
    A folder with one sub-folder of images per class (:class:`torchvision.datasets.ImageFolder`).

    :param path: the folder
    :param transform: applied to each RGB image
    :return: the dataset, with ``targets`` and ``classes``
    :raises FileNotFoundError: if the folder is missing
    """
    from torchvision.datasets import ImageFolder

    if not Path(path).is_dir():
        raise FileNotFoundError(f"Image folder {str(path)!r} does not exist")
    return ImageFolder(str(path), transform=transform)


def open_cifar10(
    root: Optional[PathLike] = None, split: str = "train", transform: Optional[Callable] = None
) -> Dataset:
    """
    Open CIFAR-10 from whatever ``root`` holds: a JPEG pack (:class:`CIFAR10JPEG`), torchvision's
    ``cifar-10-batches-py`` (:class:`torchvision.datasets.CIFAR10`, never downloaded), or an image
    folder (``root/split`` if it exists, else ``root``; see :func:`image_folder`).

    :param root: the folder; default ``<data>/cifar10_jpeg``
    :param split: ``"train"`` or ``"test"``
    :param transform: applied to each RGB image
    :return: the dataset, with ``targets``
    :raises ValueError: for an unknown split
    :raises FileNotFoundError: if ``root`` holds none of these
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if root is None:
        return CIFAR10JPEG(split=split, transform=transform)
    root = Path(root)
    if (root / f"{split}.jpegs.xz").exists():
        return CIFAR10JPEG(root, split=split, transform=transform)
    for folder in (root, root / "cifar-10-batches-py"):
        if (folder / "data_batch_1").exists():
            from torchvision.datasets import CIFAR10

            return CIFAR10(
                str(folder.parent), train=split == "train", transform=transform, download=False
            )
    if (root / split).is_dir():
        return image_folder(root / split, transform)
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        return image_folder(root, transform)
    raise FileNotFoundError(
        f"{str(root)!r} holds no CIFAR-10 JPEG pack, torchvision CIFAR-10 batches or image folder"
    )


def labels_of(dataset: Dataset) -> Optional[np.ndarray]:
    """
    Labels of a dataset without loading its images: its ``targets`` or ``labels`` attribute,
    followed through :class:`torch.utils.data.Subset`.

    :param dataset: the dataset
    :return: integer array of length ``len(dataset)``, or ``None`` if unknown
    """
    if isinstance(dataset, Subset):
        parent = labels_of(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices, dtype=np.int64)]
    for name in ("targets", "labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
            if labels.ndim == 1 and len(labels) == len(dataset):
                return labels.astype(np.int64)
    return None


def subset_indices(labels: Optional[np.ndarray], size: int, n: int, seed: int = 0) -> np.ndarray:
    """
    Deterministic, class-balanced choice of ``n`` of ``size`` positions: the classes take turns
    (in a seeded order), each giving its next position from a seeded permutation, so class counts
    differ by at most one while every class has positions left.

    :param labels: labels of the positions, or ``None`` for a plain random choice
    :param size: number of positions
    :param n: number to choose (all if ``n >= size``)
    :param seed: random seed
    :return: the chosen positions, sorted
    """
    rng = np.random.default_rng(seed)
    n = min(int(n), size)
    if labels is None or len(np.unique(labels)) < 2:
        return np.sort(rng.permutation(size)[:n])
    classes = rng.permutation(np.unique(labels))
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    # rank of each position within its class, then interleave by rank
    order = np.concatenate(pools)
    rank = np.concatenate([np.arange(len(p)) for p in pools])
    turn = np.concatenate([np.full(len(p), k) for k, p in enumerate(pools)])
    chosen = order[np.lexsort((turn, rank))][:n]
    return np.sort(chosen)


def subset(dataset: Dataset, n: int, seed: int = 0, exclude: Optional[Sequence[int]] = None):
    """
    A fixed subset of ``n`` items, stratified by class when the labels are known
    (see :func:`labels_of` and :func:`subset_indices`).

    :param dataset: the dataset
    :param n: number of items (all if ``n`` exceeds the dataset)
    :param seed: random seed; the same seed gives the same subset
    :param exclude: positions not to choose (e.g. those of another subset)
    :return: a :class:`torch.utils.data.Subset`
    """
    labels = labels_of(dataset)
    pool = np.arange(len(dataset))
    if exclude is not None:
        pool = np.setdiff1d(pool, np.asarray(exclude, dtype=np.int64))
    chosen = subset_indices(None if labels is None else labels[pool], len(pool), n, seed)
    return Subset(dataset, pool[chosen].tolist())
