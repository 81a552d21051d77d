"""
The images of the comparison: :class:`CIFAR10Benchmark`, a :class:`pytorch_ood.benchmark.Benchmark`
over the local JPEG CIFAR-10 and OOD sets, with its validation split of held-out training images
and synthetic OOD images (:mod:`.synthetic`), at the subset sizes of :class:`Sizes`.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

from pytorch_ood.benchmark import Benchmark
from torch.utils.data import ConcatDataset, Dataset

from ..data import CIFAR10JPEG, OOD_SETS, ood_set, subset
from .synthetic import GaussianNoise, Jigsaw, UniformNoise


@dataclass
class Sizes:
    """
    Subset sizes of a benchmark run (``None``: the whole set). Subsets are class-balanced and fixed
    by ``seed``; the fit, validation-ID and jigsaw subsets of the training set are disjoint.

    :param fit: training images the detectors are fitted on
    :param val_id: held-out training images, the ID part of the validation split
    :param val_ood: synthetic OOD images of the validation split (half noise, half jigsaw)
    :param test_id: images of the CIFAR-10 test set
    :param test_ood: images per OOD test set (at most)
    :param seed: random seed of all subsets
    """

    fit: Optional[int] = 10000
    val_id: int = 1000
    val_ood: int = 1000
    test_id: Optional[int] = 2000
    test_ood: Optional[int] = 2000
    seed: int = 0

    @classmethod
    def full(cls) -> "Sizes":
        """every image: 50,000 fit (minus the validation split), 10,000 ID test, all OOD"""
        return cls(fit=None, test_id=None, test_ood=None)

    @classmethod
    def tiny(cls) -> "Sizes":
        """a few hundred images, for tests"""
        return cls(fit=300, val_id=60, val_ood=60, test_id=100, test_ood=60)


def _take(dataset: Dataset, n: Optional[int], seed: int, exclude=None) -> Dataset:
    if n is None and exclude is None:
        return dataset
    return subset(dataset, len(dataset) if n is None else n, seed, exclude=exclude)


class CIFAR10Benchmark(Benchmark):
    """
    CIFAR-10 (JPEG copy) against the local OOD sets (:data:`~line_plugin.data.OOD_SETS`): the ID
    test set combined with each OOD set; :meth:`train_set` is a subset of the JPEG training set.

    :param transform: applied to every image (the model's input transform)
    :param sizes: subset sizes and seed
    :param ood: keys of :data:`~line_plugin.data.OOD_SETS`
    :param data_dir: data folder; default :func:`~line_plugin.data.default_data_dir`
    """

    def __init__(
        self,
        transform: Optional[Callable] = None,
        sizes: Optional[Sizes] = None,
        ood: Sequence[str] = tuple(OOD_SETS),
        data_dir: Optional[Union[str, Path]] = None,
    ):
        self.sizes = sizes or Sizes()
        self.transform = transform
        self.ood_names = list(ood)
        root = Path(data_dir) / "cifar10_jpeg" if data_dir is not None else None
        s = self.sizes
        train = CIFAR10JPEG(root, split="train", transform=transform)
        raw = CIFAR10JPEG(root, split="train")
        self._val_id = _take(train, s.val_id, s.seed + 1)
        held = list(self._val_id.indices)
        n_jigsaw = s.val_ood - s.val_ood // 2
        jig_src = _take(raw, n_jigsaw, s.seed + 2, exclude=held)
        held += list(jig_src.indices)
        self._fit = _take(train, s.fit, s.seed, exclude=held)
        noise = s.val_ood // 2
        self._val_ood = ConcatDataset(
            [
                GaussianNoise(noise - noise // 2, s.seed, transform),
                UniformNoise(noise // 2, s.seed, transform),
                Jigsaw(jig_src, seed=s.seed, transform=transform),
            ]
        )
        self._id_test = _take(
            CIFAR10JPEG(root, split="test", transform=transform), s.test_id, s.seed
        )
        self._ood = [
            _take(ood_set(name, transform, data_dir), s.test_ood, s.seed)
            for name in self.ood_names
        ]

    def train_set(self) -> Dataset:
        """:return: the fit subset of the JPEG training set (disjoint from the validation split)"""
        return self._fit

    def validation_sets(self) -> Tuple[Dataset, Dataset]:
        """
        :return: held-out training images (ID) and synthetic OOD images (label ``-1``): Gaussian
            and uniform noise, and tile-shuffled held-out training images (:class:`Jigsaw`)
        """
        return self._val_id, self._val_ood

    def test_sets(self, known: bool = True, unknown: bool = True) -> List[Dataset]:
        if known and unknown:
            return [ConcatDataset([self._id_test, ood]) for ood in self._ood]
        if unknown:
            return list(self._ood)
        if known:
            return [self._id_test]
        raise ValueError("known and unknown cannot both be false")
