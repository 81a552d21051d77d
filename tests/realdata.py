"""
Features of the shared trained models on the shared images, extracted once per test session
(the shared folders are always there in CI: a missing one fails loudly).
"""

import functools
from typing import Callable, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from line_plugin import data, zoo


@functools.lru_cache(maxsize=None)
def model(name: str) -> zoo.ZooModel:
    return zoo.load_model(name)


@torch.no_grad()
def extract(encoder: Callable[[Tensor], Tensor], dataset, batch_size: int = 250):
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size):
        xs.append(encoder(x))
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


@functools.lru_cache(maxsize=None)
def densenet_features(n_train: int = 3000, n_test: int = 1500, n_ood: int = 600) -> Tuple:
    """fine-tuned DenseNet-BC-100: (train x, y), (test x, y), (dtd x) and the head (W, b)"""
    zm = model("densenet_bc100")
    net = zm.model
    train = data.subset(data.CIFAR10JPEG(split="train", transform=zm.transform), n_train, seed=0)
    test = data.subset(data.CIFAR10JPEG(split="test", transform=zm.transform), n_test, seed=0)
    dtd = data.subset(data.ood_set("dtd", transform=zm.transform), n_ood, seed=0)
    return (
        extract(net.features, train),
        extract(net.features, test),
        extract(net.features, dtd)[0],
        (net.fc.weight.detach(), net.fc.bias.detach()),
    )


def fpr_at_95_id_kept(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """the papers' FPR95: share of OOD accepted when 95 % of ID is kept (low score = ID)"""
    threshold = np.percentile(id_scores, 95)
    return float(np.mean(ood_scores <= threshold))
