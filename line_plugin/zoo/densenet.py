"""
DenseNet-BC (:class:`DenseNet3`), the architecture of the DICE and LINe CIFAR checkpoints, with
parameter names that match theirs.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Bottleneck(nn.Module):
    # pre-activation: BN, ReLU, 1x1 conv to 4k, BN, ReLU, 3x3 conv to k; output concatenated
    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        inter = 4 * growth
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class _DenseBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, growth: int):
        super().__init__()
        self.layer = nn.Sequential(
            *[_Bottleneck(in_planes + i * growth, growth) for i in range(n)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class DenseNet3(nn.Module):
    """
    DenseNet-BC (bottleneck, compression 0.5) for 32x32 inputs, as in the DICE and LINe code: the
    "DenseNet-101" of their papers with ``depth=100, growth_rate=12``. Parameter names match the
    checkpoints of both.

    ``forward`` is ``fc(features(x))``; :meth:`features` is BatchNorm, ReLU and global average
    pooling of :meth:`feature_maps`: 342 non-negative values for depth 100.

    :param depth: network depth, :math:`6n + 4`
    :param num_classes: number of classes
    :param growth_rate: channels added per bottleneck unit
    :param reduction: channel compression of the transitions
    """

    def __init__(
        self,
        depth: int = 100,
        num_classes: int = 10,
        growth_rate: int = 12,
        reduction: float = 0.5,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        self.block1 = _DenseBlock(n, planes, growth_rate)
        planes += n * growth_rate
        self.trans1 = _Transition(planes, int(math.floor(planes * reduction)))
        planes = int(math.floor(planes * reduction))
        self.block2 = _DenseBlock(n, planes, growth_rate)
        planes += n * growth_rate
        self.trans2 = _Transition(planes, int(math.floor(planes * reduction)))
        planes = int(math.floor(planes * reduction))
        self.block3 = _DenseBlock(n, planes, growth_rate)
        planes += n * growth_rate
        self.bn1 = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)
        #: size of the penultimate features
        self.num_features = planes

    def feature_maps(self, x: Tensor) -> Tensor:
        """
        :param x: images, :math:`B \\times 3 \\times 32 \\times 32`
        :return: activations after the final BatchNorm and ReLU, :math:`B \\times 342 \\times 8
            \\times 8` for depth 100
        """
        out = self.trans1(self.block1(self.conv1(x)))
        out = self.trans2(self.block2(out))
        return F.relu(self.bn1(self.block3(out)))

    def features(self, x: Tensor) -> Tensor:
        """
        :param x: images, :math:`B \\times 3 \\times 32 \\times 32`
        :return: penultimate features, :math:`B \\times 342` for depth 100
        """
        return F.adaptive_avg_pool2d(self.feature_maps(x), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))
