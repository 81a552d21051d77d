"""
Penultimate features of images, batch by batch: a dataset (or a data loader) through an encoder.
The one feature extractor of the package: :class:`line_plugin.Pipeline` scores and calibrates
with it, and :mod:`line_plugin.evaluation` caches its output on disk.
"""

from typing import Callable, Iterator, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .batching import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS


def feature_batches(
    encoder: Callable[[Tensor], Tensor],
    images: Union[Dataset, DataLoader],
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = DEFAULT_WORKERS,
    device: str = "cpu",
    desc: str = "features",
    progress: bool = True,
) -> Iterator[Tuple[Tensor, Tensor]]:
    """
    The features of ``images`` batch by batch, for callers that use each batch as it comes
    (the pipeline writes rows as batches finish); :func:`compute_features` concatenates them.

    :param encoder: images to :math:`B \\times D` features (the caller moves it to ``device``)
    :param images: a dataset of ``(image tensor, label)``, batched here, or a data loader of
        such batches, used as it is (``batch_size`` and ``num_workers`` are then its own)
    :param batch_size: images per batch
    :param num_workers: data-loading worker processes
    :param device: device the encoder runs on
    :param desc: progress bar label
    :param progress: show a progress bar where stderr is a terminal
    :return: an iterator of float32 features :math:`B \\times D` and the int64 second items
        :math:`B` (labels, or the status of :class:`line_plugin.data.ImageFiles`), on the CPU,
        in the order of ``images``
    """
    if not isinstance(images, DataLoader):
        images = DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    disable = None if progress else True  # None: only on a terminal
    for x, y in tqdm(images, desc=desc, disable=disable, leave=False):
        with torch.no_grad():
            z = encoder(x.to(device)).float().flatten(1).cpu()
        yield z, torch.as_tensor(y, dtype=torch.long)


def compute_features(
    encoder: Callable[[Tensor], Tensor], images: Union[Dataset, DataLoader], **options
) -> Tuple[Tensor, Tensor]:
    """
    :func:`feature_batches`, concatenated.

    :param encoder: images to :math:`B \\times D` features
    :param images: a dataset of ``(image tensor, label)`` or a data loader of such batches
    :param options: ``batch_size``, ``num_workers``, ``device``, ``desc`` and ``progress`` of
        :func:`feature_batches`
    :return: float32 features :math:`N \\times D` and int64 labels :math:`N`, on the CPU
    """
    zs, ys = zip(*feature_batches(encoder, images, **options))
    return torch.cat(zs), torch.cat(ys)
