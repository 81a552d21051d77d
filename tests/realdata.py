"""
Features of the shared trained models on the shared images, extracted once per test session
(the shared folders are always there in CI: a missing one fails loudly).
"""

import functools
from typing import Callable, Tuple

from torch import Tensor

from line_plugin import data, zoo
from line_plugin.features import compute_features


@functools.lru_cache(maxsize=None)
def model(name: str) -> zoo.ZooModel:
    return zoo.load_model(name)


def extract(encoder: Callable[[Tensor], Tensor], dataset) -> Tuple[Tensor, Tensor]:
    """outputs of ``encoder`` on ``dataset`` and its labels"""
    # batches of 50 run about 1.35 times as fast as 250 on a CPU (DenseNet-BC-100, one thread)
    return compute_features(encoder, dataset, batch_size=50, progress=False)


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
