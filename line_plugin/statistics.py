"""
Streaming statistics of the in-distribution training features: per-class sums and counts (for
the class means of step 1 of LINe) and a bounded, deterministic sample of the activations (for a
clipping threshold fitted as a quantile). Memory is :math:`O(K D)` whatever the number of
samples; under :mod:`torch.distributed`, the statistics of all processes are combined.
"""

from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

#: largest number of activations kept for the clipping quantile; below it the quantile is exact
SAMPLE_CAPACITY = 2**21


def check_features(x: Tensor, num_features: int, what: str = "features") -> None:
    """
    :raises ValueError: unless ``x`` is a :math:`B \\times D` float tensor of finite values
        with ``D == num_features``
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{what} must have shape B x D, got shape {tuple(x.shape)}")
    if x.shape[1] != num_features:
        raise ValueError(
            f"{what} have width {x.shape[1]}, but the final layer expects {num_features} "
            f"(weight is K x {num_features})"
        )
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {x.dtype}")
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values")


class ClassStatistics:
    """
    Accumulates per-class sums (float64) and counts of features, ignoring samples with labels
    below 0 (pytorch-ood's convention for OOD samples), and a strided sample of the activations.

    :param num_classes: number of classes :math:`K`
    :param num_features: feature width :math:`D`
    """

    def __init__(self, num_classes: int, num_features: int):
        self.num_classes = num_classes
        self.num_features = num_features
        self.sums = torch.zeros(num_classes, num_features, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.int64)
        # activations with global index i are kept where i % stride == 0
        self._sample = []
        self._sample_size = 0
        self.stride = 1
        self._seen = 0

    def update(self, x: Tensor, y: Tensor) -> None:
        """
        :param x: features, shape :math:`N \\times D`
        :param y: integer labels, shape :math:`N`; labels below 0 are ignored
        :raises ValueError: on bad features or labels
        """
        y = torch.as_tensor(y)
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels must have shape N = {x.shape[0]} to match the features, "
                f"got shape {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {y.dtype}")
        known = y >= 0
        x, y = x[known.to(x.device)], y[known].to(torch.int64)
        check_features(x, self.num_features)
        if y.numel() and int(y.max()) >= self.num_classes:
            raise ValueError(
                f"label {int(y.max())} is out of range: the final layer has "
                f"{self.num_classes} classes (labels 0 to {self.num_classes - 1})"
            )
        x = x.detach().to("cpu", torch.float64)
        self.sums.index_add_(0, y.cpu(), x)
        self.counts += torch.bincount(y.cpu(), minlength=self.num_classes)
        self._add_sample(x.flatten())

    def _add_sample(self, values: Tensor) -> None:
        first = (-self._seen) % self.stride
        self._seen += values.numel()
        kept = values[first :: self.stride].to(torch.float32)
        self._sample.append(kept)
        self._sample_size += kept.numel()
        while self._sample_size > SAMPLE_CAPACITY:
            # keep every other kept value: those whose global index is a multiple of 2 * stride
            merged = torch.cat(self._sample)[::2]
            self._sample, self._sample_size, self.stride = (
                [merged],
                merged.numel(),
                2 * self.stride,
            )

    def sample(self) -> Tensor:
        """
        :return: the kept activations, all of them where fewer than :data:`SAMPLE_CAPACITY` were
            seen, otherwise every ``stride``-th one
        """
        return torch.cat(self._sample) if self._sample else torch.zeros(0)

    def all_reduce(self) -> None:
        """
        Combine the statistics of all processes of the default :mod:`torch.distributed` group
        (a no-op without one): sums and counts are summed, activation samples concatenated.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        sums, counts = self.sums.to(device), self.counts.to(device)
        dist.all_reduce(sums)
        dist.all_reduce(counts)
        self.sums, self.counts = sums.cpu(), counts.cpu()
        samples = [None] * dist.get_world_size()
        dist.all_gather_object(samples, self.sample().numpy())
        merged = torch.from_numpy(np.concatenate(samples))
        self._sample, self._sample_size = [merged], merged.numel()
        self.stride = max(self.stride, 1)

    def class_means(self) -> Tensor:
        """
        :return: class means of the features in float64, shape :math:`K \\times D`
        :raises ValueError: if no sample, or no sample of some class, was seen
        """
        if int(self.counts.sum()) == 0:
            raise ValueError("no in-distribution sample (label >= 0) to fit on")
        missing = (self.counts == 0).nonzero().flatten().tolist()
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise ValueError(
                f"no training sample for class(es) {shown}: LINe needs the mean features of "
                f"every one of the {self.num_classes} classes"
            )
        return self.sums / self.counts[:, None]

    @staticmethod
    def sample_quantile(sample: Tensor, q: float) -> Optional[float]:
        """
        :return: the ``q``-quantile of the activation sample (NumPy's linear interpolation)
        """
        from .masks import quantile

        return float(quantile(sample.double().numpy(), q))
