"""
A bounded, deterministic sample of the ID training activations, for a clipping threshold fitted
as a quantile of them (``LINe(clip_quantile=...)``) and the warning on signed features.
"""

import torch
import torch.distributed as dist
from torch import Tensor

#: largest number of activations kept; below it the sample holds every activation
SAMPLE_CAPACITY = 2**21


class ActivationSample:
    """
    Keeps the activations whose index in the stream is a multiple of ``stride``, the smallest
    power of two that keeps at most :data:`SAMPLE_CAPACITY` of them; which ones are kept does not
    depend on how the stream is cut into batches. One buffer, grown by doubling, thinned in place
    when the stride doubles.
    """

    def __init__(self):
        self._buffer = torch.empty(0)
        self._size = 0
        self.stride = 1
        self._seen = 0

    def add(self, x: Tensor) -> None:
        """:param x: activations of any shape, in stream order (flattened row by row)"""
        values = x.detach().flatten()
        seen = self._seen + values.numel()
        stride = self.stride
        while -(-seen // stride) > SAMPLE_CAPACITY:
            stride *= 2
        if stride != self.stride:  # the kept value k has index k * self.stride
            thinned = self.values()[:: stride // self.stride]
            self._size = thinned.numel()
            self._buffer[: self._size] = thinned
        kept = values[(-self._seen) % stride :: stride].cpu()
        end = self._size + kept.numel()
        if end > self._buffer.numel():
            grown = torch.empty(min(SAMPLE_CAPACITY, max(end, 2 * self._buffer.numel())))
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown
        self._buffer[self._size : end] = kept  # rounded to float32
        self._size, self._seen, self.stride = end, seen, stride

    def values(self) -> Tensor:
        """:return: a copy of the kept activations, float32"""
        return self._buffer[: self._size].clone()

    def all_reduce(self) -> None:
        """
        Combine the samples of all processes of the default :mod:`torch.distributed` group (a
        no-op without one): each is brought to the largest stride of all, so that every
        process's activations are kept at one rate, then concatenated and thinned to the capacity.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        strides = [None] * dist.get_world_size()
        dist.all_gather_object(strides, self.stride)
        stride = max(strides)
        samples = [None] * dist.get_world_size()
        dist.all_gather_object(samples, self.values()[:: stride // self.stride].numpy())
        parts = [torch.from_numpy(part) for part in samples]
        while sum(part.numel() for part in parts) > SAMPLE_CAPACITY:
            parts, stride = [part[::2] for part in parts], 2 * stride
        self._buffer = torch.cat(parts)
        self._size, self.stride = self._buffer.numel(), stride
