"""
Synthetic OOD images for the validation split: tile-shuffled images (:class:`Jigsaw`) and
Gaussian and uniform noise seeded per item (:class:`GaussianNoise`, :class:`UniformNoise`).
None of them is in a test set.
"""

from typing import Callable, Optional, Tuple

import numpy as np
from PIL import Image
from pytorch_ood.dataset import img as ood_img
from torch.utils.data import Dataset


class Jigsaw(Dataset):
    """
    Synthetic OOD images: each image of ``dataset`` cut into ``grid`` x ``grid`` tiles that are
    shuffled (a fixed permutation per item). Low-level statistics stay those of the ID data.

    :param dataset: yields ``(PIL image, label)``
    :param grid: tiles per side
    :param seed: random seed of the permutations
    :param transform: applied to the shuffled image
    """

    def __init__(self, dataset: Dataset, grid: int = 4, seed: int = 0, transform=None):
        self.dataset = dataset
        self.grid = grid
        self.seed = seed
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> Tuple[object, int]:
        img, _ = self.dataset[item]
        arr = np.asarray(img)
        h, w = arr.shape[0] // self.grid, arr.shape[1] // self.grid
        tiles = [
            arr[i * h : (i + 1) * h, j * w : (j + 1) * w]
            for i in range(self.grid)
            for j in range(self.grid)
        ]
        order = np.random.default_rng([self.seed, item]).permutation(len(tiles))
        rows = [
            np.concatenate([tiles[k] for k in order[r * self.grid : (r + 1) * self.grid]], 1)
            for r in range(self.grid)
        ]
        out = Image.fromarray(np.ascontiguousarray(np.concatenate(rows, 0)))
        if self.transform is not None:
            out = self.transform(out)
        return out, -1


class _PerItemSeed:
    # pytorch-ood's noise sets draw from one generator in call order; seeding per item makes an
    # image depend only on (seed, index), whatever the order or the data loader workers
    def __init__(self, n: int, seed: int = 0, transform: Optional[Callable] = None):
        super().__init__(n, (32, 32, 3), transform, seed=seed)
        self.seed = seed

    def __getitem__(self, item: int):
        self.generator = np.random.default_rng([self.seed, item])
        return super().__getitem__(item)


class GaussianNoise(_PerItemSeed, ood_img.GaussianNoise):
    """
    ``n`` images of 32 x 32 Gaussian noise (pytorch-ood's), label ``-1``; image ``i`` depends
    only on ``(seed, i)``.

    :param n: number of images
    :param seed: random seed
    :param transform: applied to each PIL image
    """


class UniformNoise(_PerItemSeed, ood_img.UniformNoise):
    """
    ``n`` images of 32 x 32 uniform noise (pytorch-ood's), label ``-1``; image ``i`` depends only
    on ``(seed, i)``.

    :param n: number of images
    :param seed: random seed
    :param transform: applied to each PIL image
    """
