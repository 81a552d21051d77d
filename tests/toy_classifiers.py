"""
Small classifiers with known heads, and the batches and check the adapter tests share.

Each class stands for one kind of timm or torchvision head; its docstring names them.
"""

import torch
from torch import nn

from line_plugin.adapter import Split

K = 5


def reproduces(split: Split, model: nn.Module, x: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Whether ``encoder(x) @ W.T + b`` equals ``model(x)`` on a batch the split never saw."""
    encoder, weight, bias = split
    with torch.no_grad():
        logits = model(x)
        estimate = encoder(x).to(weight.dtype) @ weight.T + bias
    return bool((estimate - logits).abs().max() <= rtol * logits.abs().max())


class MLP(nn.Module):
    def __init__(self, bias: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.fc = nn.Linear(8, K, bias=bias)

    def forward(self, x):
        return self.fc(self.body(x))


class ConvHead(nn.Module):
    """A 1x1 convolution classifier on pooled features (DLA, DPN, ResNetV2)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Conv2d(8, K, 1)

    def forward(self, x):
        return self.fc(self.body(x)).flatten(1)


class SharedHeads(nn.Module):
    """Two classifiers on one vector, averaged (EfficientFormer, SwiftFormer)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 8), nn.GELU())
        self.head, self.head_dist = nn.Linear(8, K), nn.Linear(8, K)

    def forward(self, x):
        x = self.body(x)
        return (self.head(x) + self.head_dist(x)) / 2


class TokenHeads(nn.Module):
    """Two classifiers on two different tokens, averaged (distilled DeiT, PiT)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 2 * 8)
        self.head, self.head_dist = nn.Linear(8, K), nn.Linear(8, K)

    def forward(self, x):
        tokens = torch.tanh(self.body(x)).view(-1, 2, 8)
        return (self.head(tokens[:, 0]) + self.head_dist(tokens[:, 1])) / 2


class SoftmaxMix(nn.Module):
    """Per-stage heads mixed by fixed softmax weights (EfficientViM)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.Linear(12, 6), nn.Linear(6, 4)])
        self.heads = nn.ModuleList([nn.Linear(6, K), nn.Linear(4, K)])
        self.weights = nn.Parameter(torch.tensor([0.3, -1.1]))

    def forward(self, x):
        h1 = torch.relu(self.stages[0](x))
        h2 = torch.relu(self.stages[1](h1))
        mix = self.weights.softmax(-1)
        return mix[0] * self.heads[0](h1) + mix[1] * self.heads[1](h2)


class NormHead(nn.Module):
    """BatchNorm then Linear (LeViT, EfficientViT-MSRA)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 8)
        self.head = nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, K))

    def forward(self, x):
        return self.head(self.body(x))


class AuxMax(nn.Module):
    """A class-token head plus the max over tokens of an auxiliary head (VOLO): not linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 4 * 8)
        self.head, self.aux_head = nn.Linear(8, K), nn.Linear(8, K)

    def forward(self, x):
        tokens = self.body(x).view(-1, 4, 8)
        return self.head(tokens[:, 0]) + 0.5 * self.aux_head(tokens[:, 1:]).max(1)[0]


class Squeeze(nn.Module):
    """A convolution classifier followed by ReLU and pooling (SqueezeNet): not linear."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Sequential(nn.Conv2d(3, K, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.classifier(x).flatten(1)


class TimmStyle(nn.Module):
    """
    timm's head API: ``forward_features``, ``forward_head(x, pre_logits)``, ``get_classifier``.

    ``head="plain"``: one ``nn.Linear`` on the pre-logits (ResNet, ViT). ``head="norm"``: the
    pre-logits are taken before a BatchNorm that precedes the classifier, and
    ``get_classifier()`` gives the inner Linear only (EfficientViT-MSRA, SHViT): timm's API does
    not split it; ``head="norm_init"``: the same with the BatchNorm as initialised, within
    float32 rounding of the identity. ``head="copy"``: the classifier runs, but the logits come
    from a copy of it (equal on any input): they are not the classifier's output.
    ``head="logits"``: ``forward_head`` ignores ``pre_logits`` and gives the logits.
    """

    def __init__(self, head: str = "plain"):
        super().__init__()
        self.kind = head
        self.body = nn.Sequential(nn.Linear(12, 8), nn.ReLU())
        self.norm = nn.BatchNorm1d(8) if head.startswith("norm") else nn.Identity()
        self.fc = nn.Linear(8, K)
        self.fc_copy = nn.Linear(8, K)
        with torch.no_grad():
            self.fc_copy.load_state_dict(self.fc.state_dict())
            if head == "norm":
                self.norm.running_mean.copy_(torch.linspace(-0.5, 0.5, 8))
                self.norm.running_var.copy_(torch.linspace(0.5, 2.0, 8))

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, x, pre_logits: bool = False):
        if pre_logits and self.kind != "logits":
            return x
        logits = self.fc(self.norm(x))
        return self.fc_copy(x) if self.kind == "copy" else logits

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class LogSoftmax(MLP):
    def forward(self, x):
        return super().forward(x).log_softmax(1)


class TwiceHead(MLP):
    """The classifier applied twice, to two vectors: its input is not one feature vector."""

    def forward(self, x):
        h = self.body(x)
        return self.fc(h) + self.fc(h.flip(1))


class TupleOut(MLP):
    def forward(self, x):
        return super().forward(x), x


def vectors(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 12, generator=torch.Generator().manual_seed(seed))


def images(n: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
