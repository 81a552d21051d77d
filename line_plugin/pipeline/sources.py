"""
What a pipeline reads: the training data of :meth:`~line_plugin.Pipeline.fit` (a folder, a
dataset or a data loader), the share of it held out for the calibration, and the images of
:meth:`~line_plugin.Pipeline.calibrate` and :meth:`~line_plugin.Pipeline.score` (files and
folders, a dataset or a data loader).
"""

import os
from pathlib import Path
from typing import Callable, Collection, List, Optional, Sequence, Tuple, Union

from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset

from .. import data
from ..calibration import DEFAULT_FRACTION, calibration_split

PathLike = Union[str, os.PathLike]
#: training data: a folder, a dataset of ``(image tensor, label)``, or a loader of batches
Training = Union[PathLike, Dataset, DataLoader]
#: images: a file or folder, several, a dataset of ``(image tensor, label)``, or a loader
Images = Union[PathLike, Sequence[PathLike], Dataset, DataLoader]


def training_folder(folder: PathLike) -> Path:
    """
    :return: ``folder``, a training folder that exists
    :raises FileNotFoundError: if it does not
    """
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"training folder {str(folder)!r} does not exist")
    return Path(folder)


def training_data(source: Training, transform: Callable) -> Union[Dataset, DataLoader]:
    """
    :param source: an image folder (one sub-folder of images per class), torchvision's
        CIFAR-10 folder or a JPEG pack folder (:func:`line_plugin.data.open_cifar10`), a dataset
        or a data loader
    :param transform: applied to the images of a folder
    :return: the dataset (with ``targets`` and ``classes`` for a folder) or the loader
    :raises FileNotFoundError: for a missing folder, or one holding no training set
    :raises ValueError: for anything else
    """
    if isinstance(source, (Dataset, DataLoader)):
        return source
    if isinstance(source, (str, os.PathLike)):
        return data.open_cifar10(training_folder(source), "train", transform)
    raise ValueError(
        f"cannot fit on a {type(source).__name__}: pass a folder, a dataset or a data loader"
    )


def describe(source: Training, training: Union[Dataset, DataLoader]) -> str:
    """:return: the training data in a few words: its folder, else its type"""
    dataset = _whole(training)
    root = getattr(dataset, "root", None)
    if root:
        return str(root)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return type(dataset).__name__


def class_names(training: Union[Dataset, DataLoader]) -> Optional[List[str]]:
    """:return: the training data's ``classes`` (followed through subsets), or ``None``"""
    classes = getattr(_whole(training), "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def held_out_share(training: Union[Dataset, DataLoader], calibration: Optional[float]) -> float:
    """
    :param training: the training data
    :param calibration: the share to hold out for the calibration, or ``None`` for the default
        (:data:`line_plugin.calibration.DEFAULT_FRACTION` of a dataset, none of a loader)
    :return: the share
    :raises ValueError: for a share of a data loader, which is read as it is
    """
    if not isinstance(training, DataLoader):
        return DEFAULT_FRACTION if calibration is None else calibration
    if calibration:
        raise ValueError(
            "a data loader is fitted on as it is, so no share of it can be held out for the "
            "calibration: pass its dataset, or calibration=0 and calibrate(images) after"
        )
    return 0.0


def calibration_sets(
    dataset: Dataset, fraction: float, seed: int
) -> Tuple[Dataset, Optional[Dataset]]:
    """
    :param dataset: the training images, with labels (see :func:`line_plugin.data.labels_of`)
    :param fraction: share held out for the calibration; 0: none
    :param seed: seed of the choice
    :return: the images to fit on and the held-out ones (``None`` if ``fraction`` is 0),
        disjoint and stratified by class (:func:`line_plugin.calibration.calibration_split`)
    :raises ValueError: if the split leaves no image on either side
    """
    if fraction == 0:
        return dataset, None
    fit, held_out = calibration_split(data.labels_of(dataset), len(dataset), fraction, seed)
    return Subset(dataset, fit.tolist()), Subset(dataset, held_out.tolist())


def image_files(images: Images) -> Optional[List[Path]]:
    """
    :param images: see :data:`Images`
    :return: the image files of file and folder paths (folders searched recursively,
        :func:`line_plugin.data.find_images`); ``None`` for a dataset or a loader
    :raises FileNotFoundError: for a missing path
    :raises ValueError: if no image is found
    """
    if isinstance(images, (Dataset, DataLoader)):
        return None
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    return data.find_images(list(images))


def images_read(
    images: Images, transform: Callable, input_size: int, exclude: Collection[str] = ()
) -> Union[Dataset, DataLoader]:
    """
    :param images: see :data:`Images`
    :param transform: PIL image to the model's input
    :param input_size: side of the model's inputs (the placeholder of an unreadable file)
    :param exclude: names of files not to read (already scored)
    :return: what to read: for files and folders, :class:`line_plugin.data.ImageFiles`, whose
        second items are a status (1: the file could not be read) instead of a label; a dataset
        or a loader as it is
    """
    files = image_files(images)
    if files is None:
        if isinstance(images, DataLoader) and isinstance(images.dataset, data.ImageFiles):
            if not isinstance(images.sampler, SequentialSampler):
                raise ValueError(
                    "a data loader of image files is scored in order: make it without shuffle "
                    "or sampler, or pass the files"
                )
        return images
    files = [f for f in files if str(f) not in exclude]
    return data.ImageFiles(files, transform, input_size)


def _whole(training: Union[Dataset, DataLoader]) -> Dataset:
    # the dataset a loader reads, or a subset is taken from
    dataset = training.dataset if isinstance(training, DataLoader) else training
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset
