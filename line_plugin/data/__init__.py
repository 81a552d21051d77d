"""
The application's data: where the shared folder lies (:mod:`.shared`: :func:`shared_dir`,
:func:`default_data_dir`, :func:`default_models_dir`), the user's image files (:mod:`.images`:
:func:`find_images`, :func:`read_image`, :class:`ImageFiles`, :func:`image_folder`), fixed
class-balanced subsets (:mod:`.subsets`: :func:`labels_of`, :func:`subset`) and the readers of
the benchmark data in the shared folder (:mod:`.benchmark`: :class:`CIFAR10JPEG`,
:class:`NpzImages`, :data:`OOD_SETS`, :func:`ood_set`, :func:`open_cifar10`). Each module imports
only those before it in this list.
"""

from .benchmark import (
    CIFAR10_CLASSES,
    CIFAR10JPEG,
    OOD_SETS,
    OOD_TITLES,
    NpzImages,
    ood_set,
    open_cifar10,
)
from .images import IMAGE_EXTENSIONS, ImageFiles, find_images, image_folder, read_image
from .shared import PathLike, default_data_dir, default_models_dir, shared_dir
from .subsets import labels_of, subset, subset_indices

__all__ = [
    "CIFAR10JPEG",
    "CIFAR10_CLASSES",
    "IMAGE_EXTENSIONS",
    "OOD_SETS",
    "OOD_TITLES",
    "ImageFiles",
    "NpzImages",
    "PathLike",
    "default_data_dir",
    "default_models_dir",
    "find_images",
    "image_folder",
    "labels_of",
    "ood_set",
    "open_cifar10",
    "read_image",
    "shared_dir",
    "subset",
    "subset_indices",
]
