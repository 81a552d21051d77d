"""
Scoring, one stage per function as the images stream through :meth:`line_plugin.Pipeline.score`:
features (:mod:`line_plugin.features`) to outlier scores and the classifier's predicted class
(:func:`scored`), then to :class:`~.records.Row` and :class:`~.records.Skipped` records per
batch (:func:`rows`).
"""

from typing import Iterable, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .. import data
from ..adapter import Split
from ..calibration import flag
from .records import Row, ScoredBatch, Skipped, UnreadableImageError


def scored(
    detector, split: Split, features: Iterable[Tuple[Tensor, Tensor]], device: str = "cpu"
) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """
    :param detector: a fitted :class:`line_plugin.LINe` for the backbone, on ``device``
    :param split: the backbone's encoder and head
    :param features: batches of features :math:`B \\times D` and second items :math:`B`
    :param device: where the head runs
    :return: per batch, the outlier scores, the classifier's predicted labels (the head's
        logits, computed once) and the second items, :math:`B` each, on the CPU
    """
    weight, bias = split.weight.to(device), split.bias.to(device)
    for z, second in features:
        with torch.no_grad():
            z = z.to(device)
            scores = detector.predict_features(z).cpu()
            labels = torch.addmm(bias, z, weight.T).argmax(dim=1).cpu()
        yield scores, labels, second


def rows(
    batches: Iterable[Tuple[Tensor, Tensor, Tensor]],
    items,
    classes: Optional[Sequence[str]],
    threshold: Optional[float],
    strict: bool = False,
) -> Iterator[ScoredBatch]:
    """
    :param batches: of :func:`scored`, in the order of ``items``
    :param items: what was read: :class:`line_plugin.data.ImageFiles` or a loader of them, in
        order (rows named by file, unreadable files skipped), or another dataset or loader
        (rows named by position)
    :param classes: class names by label, or ``None`` (the label as text)
    :param threshold: flag scores above it (:func:`line_plugin.calibration.flag`), or ``None``
    :param strict: raise at the first file that cannot be read, instead of skipping it
    :return: per batch, the rows of the images read and the files skipped
    :raises UnreadableImageError: with ``strict``, at the first file that cannot be read
    """
    dataset = items.dataset if isinstance(items, DataLoader) else items
    files = dataset if isinstance(dataset, data.ImageFiles) else None
    position = 0
    for scores, labels, second in batches:
        out = ScoredBatch([], [])
        ood = [None] * len(scores) if threshold is None else flag(scores, threshold).tolist()
        for score, label, status, is_ood in zip(
            scores.tolist(), labels.tolist(), second.tolist(), ood
        ):
            name = str(position) if files is None else str(files.files[position])
            if files is not None and status:
                skipped = Skipped(name, files.error(position) or "cannot be read")
                if strict:
                    raise UnreadableImageError(skipped)
                out.skipped.append(skipped)
            else:
                predicted = classes[label] if classes else str(label)
                out.rows.append(Row(name, score, predicted, is_ood))
            position += 1
        yield out
