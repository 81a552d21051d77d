"""
Fitting under :mod:`torch.distributed`: each process passes its own shard, and the class sums
and counts are added over the processes of the default group (a no-op without one).

A :class:`~torch.utils.data.distributed.DistributedSampler` with ``drop_last=False`` pads the
shards to one length by repeating up to ``world_size - 1`` samples. :func:`unpadded` drops these
repeats from a loader, so that :meth:`line_plugin.LINe.fit` counts every sample once; features
passed to ``fit_features`` or ``fit_batches`` are counted as they are.
"""

from typing import Iterable, Tuple

import torch.distributed as dist
from torch import Tensor
from torch.utils.data.distributed import DistributedSampler


def active() -> bool:
    """:return: whether a default process group of more than one process is initialized"""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(sums: Tensor, counts: Tensor) -> Tuple[Tensor, Tensor]:
    """
    :param sums: this process's float64 class sums, :math:`K \\times D`, on the CPU
    :param counts: its class counts, :math:`K`
    :return: the sums and counts of all processes, on the CPU (the arguments without a group)
    """
    if not active():
        return sums, counts
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    sums, counts = sums.to(device), counts.to(device)
    dist.all_reduce(sums)
    dist.all_reduce(counts)
    return sums.cpu(), counts.cpu()


def unpadded(loader: Iterable) -> Iterable:
    """
    :param loader: yields batches ``(x, y)``
    :return: the same batches, less the samples its ``DistributedSampler`` (if any) repeated
        for padding: local sample :math:`i` of rank :math:`r` is position
        :math:`r + i \\cdot W` of the padded order, a repeat from position :math:`N` on
    """
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
        yield from loader
        return
    n, rank, world = len(sampler.dataset), sampler.rank, sampler.num_replicas
    own = max(0, -(-(n - rank) // world))  # positions r, r + W, ... below N
    seen = 0
    for x, y in loader:
        if seen >= own:
            break
        keep = own - seen
        yield (x, y) if len(x) <= keep else (x[:keep], y[:keep])
        seen += len(x)
