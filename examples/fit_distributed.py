"""
Fit LINe on ImageNet (or any ImageFolder) across GPUs and nodes with ``torchrun``.

Each process encodes its own shard of the training set; :meth:`line_plugin.LINe.fit` all-reduces
the class sums and counts, so every process ends with the same detector as a single-process fit
(the class means to float64 rounding, the masks and hence the scores exactly). Rank 0 saves it.

The shards are disjoint and cover the training set exactly once. ``DistributedSampler`` would pad
them to equal length with repeated samples, which the class means would count twice.

Usage::

    # one node with 8 GPUs
    torchrun --nproc_per_node=8 examples/fit_distributed.py \\
        --data /data/imagenet/train --model resnet50.tv_in1k --preset imagenet --out line.pt

    # two nodes with 8 GPUs each (run on both, with --node_rank=0 and 1)
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=node0.example:29500 \\
        examples/fit_distributed.py --data /data/imagenet/train --model resnet50.tv_in1k \\
        --preset imagenet --out line.pt

    # a smoke test without ImageNet, weights or a GPU: random images, 2 CPU processes
    torchrun --nproc_per_node=2 examples/fit_distributed.py --synthetic --model resnet18 \\
        --no-pretrained --out /tmp/line.pt
"""

import argparse
import os
import time
from typing import Iterator

import timm
import timm.data
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from torchvision import datasets, transforms

from line_plugin import LINe


class ShardSampler(Sampler[int]):
    """
    The indices ``rank, rank + world_size, ...`` of a dataset of ``size`` samples, in order:
    disjoint shards that together hold every sample exactly once (no padding).
    """

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fit LINe with torchrun (see the module doc)")
    parser.add_argument("--data", help="training set as an ImageFolder, e.g. imagenet/train")
    parser.add_argument("--model", default="resnet50.tv_in1k", help="timm model name")
    parser.add_argument("--no-pretrained", action="store_true", help="random weights")
    parser.add_argument("--preset", default="imagenet", help="cifar10, cifar100 or imagenet")
    parser.add_argument("--batch-size", type=int, default=256, help="per process")
    parser.add_argument("--workers", type=int, default=8, help="loader workers per process")
    parser.add_argument("--out", default="line.pt", help="where rank 0 saves the fitted state")
    parser.add_argument("--cpu", action="store_true", help="no GPU even if there is one")
    parser.add_argument(
        "--synthetic", action="store_true", help="random 64 x 64 images of 10 classes, no --data"
    )
    args = parser.parse_args()
    if not args.synthetic and not args.data:
        parser.error("give --data (an ImageFolder) or --synthetic")
    return args


def main() -> None:
    args = parse_args()
    # set by torchrun; a plain `python examples/fit_distributed.py` is a world of one
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available() and not args.cpu
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if world_size > 1:
        # MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE come from torchrun (env://)
        dist.init_process_group("nccl" if cuda else "gloo")

    num_classes = 10 if args.synthetic else None
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    torch.manual_seed(0)  # without pretrained weights, every process makes the same model
    model = timm.create_model(args.model, pretrained=not args.no_pretrained, **kwargs).eval()
    if args.synthetic:
        transform = transforms.ToTensor()
        dataset = datasets.FakeData(512, (3, 64, 64), num_classes, transform=transform)
    else:
        config = timm.data.resolve_model_data_config(model)
        transform = timm.data.create_transform(**config, is_training=False)
        dataset = datasets.ImageFolder(args.data, transform=transform)

    # split on the CPU: the final layer and an encoder of the penultimate features, checked
    # to reproduce the logits; .to() moves the encoder (and so the model) with the detector
    detector = LINe.from_model(model, preset=args.preset).to(device)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=args.workers,
        pin_memory=cuda,
    )
    start = time.perf_counter()
    detector.fit(loader, progress=rank == 0)
    seconds = time.perf_counter() - start

    counted = int(detector.class_counts.sum())
    if counted != len(dataset):  # every process sees the all-reduced counts
        raise RuntimeError(f"the fit counted {counted} samples, the dataset has {len(dataset)}")
    if rank == 0:
        detector.save(args.out)
        print(
            f"fitted LINe ({args.preset}: p_a={detector.p_a}, p_w={detector.p_w}, "
            f"clip={detector.clip}) for {args.model} on {counted} samples, "
            f"{detector.num_classes} classes x {detector.num_features} features, in "
            f"{seconds:.1f} s on {world_size} process(es); saved to {args.out}"
        )
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
