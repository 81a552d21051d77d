"""
Streaming statistics of the in-distribution training features: per-class sums and counts (for
the class means of step 1 of LINe) and a bounded, deterministic sample of the activations (for a
clipping threshold fitted as a quantile). Memory is :math:`O(K D)` whatever the number of
samples; under :mod:`torch.distributed`, the statistics of all processes are combined.
"""

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

#: largest number of activations kept for the clipping quantile; below it the quantile is exact
SAMPLE_CAPACITY = 2**21
#: features widened to float64 at a time (rows of a batch): bounds the memory of an update
CHUNK_VALUES = 2**21


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
        # activations with global index i are kept where i % stride == 0, in one buffer made at
        # the first update (no allocation per batch that outlives it: the heap does not fragment)
        self._sample: Optional[Tensor] = None
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
        if not bool(known.all()):
            x, y = x[known.to(x.device)], y[known]
        y = y.to("cpu", torch.int64)
        check_features(x, self.num_features)
        if y.numel() and int(y.max()) >= self.num_classes:
            raise ValueError(
                f"label {int(y.max())} is out of range: the final layer has "
                f"{self.num_classes} classes (labels 0 to {self.num_classes - 1})"
            )
        x = x.detach()
        rows = max(1, CHUNK_VALUES // self.num_features)
        for start in range(0, x.shape[0], rows):
            # copied in its own dtype (half the bytes of float64 from a GPU), widened on the CPU
            chunk = x[start : start + rows].cpu().to(torch.float64)
            self.sums.index_add_(0, y[start : start + rows], chunk)
            self._add_sample(chunk.flatten())
        self.counts += torch.bincount(y, minlength=self.num_classes)

    def _add_sample(self, values: Tensor) -> None:
        # the stride doubles until at most SAMPLE_CAPACITY of the indices seen are its multiples
        seen = self._seen + values.numel()
        stride = self.stride
        while -(-seen // stride) > SAMPLE_CAPACITY:
            stride *= 2
        if self._sample is None:
            self._sample = torch.empty(min(SAMPLE_CAPACITY, -(-seen // stride)))
        if stride != self.stride:
            # the kept value k has index k * self.stride: keep those at multiples of stride
            thinned = self.sample()[:: stride // self.stride].clone()
            self._sample_size = thinned.numel()
            self._sample[: self._sample_size] = thinned
        kept = values[(-self._seen) % stride :: stride]
        end = self._sample_size + kept.numel()
        if end > self._sample.numel():  # grown by doubling, up to the capacity
            grown = torch.empty(min(SAMPLE_CAPACITY, max(end, 2 * self._sample.numel())))
            grown[: self._sample_size] = self._sample[: self._sample_size]
            self._sample = grown
        self._sample[self._sample_size : end] = kept  # rounded to float32
        self._sample_size, self._seen, self.stride = end, seen, stride

    def sample(self) -> Tensor:
        """
        :return: the kept activations, all of them where fewer than :data:`SAMPLE_CAPACITY` were
            seen, otherwise every ``stride``-th one
        """
        if self._sample is None:
            return torch.zeros(0)
        return self._sample[: self._sample_size].clone()

    def all_reduce(self) -> None:
        """
        Combine the statistics of all processes of the default :mod:`torch.distributed` group
        (a no-op without one); call it once, after the last :meth:`update`. Sums and counts are
        summed (shards may be uneven, and may lack classes). The activation samples are brought
        to the largest stride of all processes first, so that every process's activations are
        kept at the same rate, then concatenated and thinned to :data:`SAMPLE_CAPACITY`.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        sums, counts = self.sums.to(device), self.counts.to(device)
        dist.all_reduce(sums)
        dist.all_reduce(counts)
        self.sums, self.counts = sums.cpu(), counts.cpu()
        strides = [None] * world
        dist.all_gather_object(strides, self.stride)
        stride = max(strides)
        # strides are powers of two: the kept value k has index k * self.stride
        own = self.sample()[:: stride // self.stride].contiguous()
        samples = [None] * world
        dist.all_gather_object(samples, own.numpy())
        parts = [torch.from_numpy(part) for part in samples]
        while sum(part.numel() for part in parts) > SAMPLE_CAPACITY:
            parts, stride = [part[::2] for part in parts], 2 * stride
        merged = torch.cat(parts)
        self._sample, self._sample_size, self.stride = merged, merged.numel(), stride

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
        means = self.sums / self.counts[:, None]
        if not torch.isfinite(means).all():
            raise ValueError(
                "the class sums of the features overflow float64: scale the features down"
            )
        return means

    @staticmethod
    def sample_quantile(sample: Tensor, q: float) -> Optional[float]:
        """
        :return: the ``q``-quantile of the activation sample (NumPy's linear interpolation)
        """
        from .masks import quantile

        return float(quantile(sample.detach().cpu().double().numpy(), q))
