"""
Readers of the local benchmark data as :class:`torch.utils.data.Dataset` objects: CIFAR-10 as
JPEG packs (:class:`CIFAR10JPEG`) and the out-of-distribution sets as ``npz`` arrays
(:class:`NpzImages`, :data:`OOD_SETS`), from the shared data folder. Users with the original
datasets can point :func:`open_cifar10` at torchvision's CIFAR-10 folder or at an image folder
instead.
"""

import functools
import io
import lzma
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..catalog import OOD_SETS  # the table of the OOD sets, torch-free
from .images import image_folder
from .shared import PathLike, default_data_dir

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
