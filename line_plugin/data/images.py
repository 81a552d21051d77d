"""
The user's image files: :func:`find_images` collects them from folders, :func:`read_image` reads
one as RGB or says in one line why it cannot, :class:`ImageFiles` is a dataset of them in which a
file that cannot be read is marked instead of stopping the data loader, and :func:`image_folder`
reads a folder with one sub-folder of images per class.
"""

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .shared import PathLike

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
