"""
The ``LINe (auto)`` row of the comparison: ``preset="auto"``'s choice
(:mod:`line_plugin.plugin.auto`) made on the benchmark's cached features. LINe is fitted on the
fit features; the held-out ID images are the validation split's (disjoint from the fit
subset), and their synthetic outliers are made from them by
:func:`~line_plugin.plugin.auto.synthetic_outliers`, as ``LINe.fit`` makes them from its own
held-out images. No test image is seen.
"""

from typing import Callable, Tuple

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..plugin.auto import AutoChoice, choose, outlier_seeds, synthetic_outliers


class AutoOutliers(Dataset):
    """
    Item ``i``: the synthetic outlier of item ``i`` of ``dataset`` (an image tensor), label
    ``-1``; it depends only on the image, ``seed`` and ``i``.

    :param dataset: yields ``(image tensor, label)``
    :param seed: seed of the outliers
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> Tuple[Tensor, int]:
        x, _ = self.dataset[item]
        return synthetic_outliers(x[None], outlier_seeds(self.seed, [item]))[0], -1


def fit_auto_on_features(
    w: Tensor,
    b: Tensor,
    fit: Tuple[Tensor, Tensor],
    val_id: Tensor,
    outliers: Tensor,
    seed: int = 0,
):
    """
    :param w: head weight :math:`K \\times D`
    :param b: head bias :math:`K`
    :param fit: fit features and labels
    :param val_id: held-out ID features
    :param outliers: features of :class:`AutoOutliers` of the held-out images
    :param seed: recorded in the choice
    :return: the fitted LINe with the chosen hyperparameters (``auto_choice`` set)
    """
    from .. import LINe

    detector = LINe(nn.Identity(), w, b).fit_features(*fit)
    choose(detector, val_id, outliers, seed=seed)
    return detector


def features_of(encoder: Callable[[Tensor], Tensor], dataset: Dataset) -> Tensor:
    """:return: the features of every item of ``dataset`` (no cache), for tests"""
    with torch.no_grad():
        return torch.cat([encoder(dataset[i][0][None]) for i in range(len(dataset))])


__all__ = ["AutoChoice", "AutoOutliers", "fit_auto_on_features"]
