"""
Penultimate features of a backbone, computed once and cached on disk
(``$LINE_OOD_CACHE`` or ``~/.cache/line_plugin``), and :class:`FeatureBenchmark`, the
pytorch-ood benchmark over them that every detector of the comparison is evaluated on.
"""

import hashlib
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from pytorch_ood.benchmark import Benchmark
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset
from tqdm.auto import tqdm


def cache_dir() -> Path:
    """
    :return: ``$LINE_OOD_CACHE`` if set, else ``~/.cache/line_plugin`` (never the shared folder)
    """
    return Path(os.environ.get("LINE_OOD_CACHE") or Path.home() / ".cache" / "line_plugin")


def model_fingerprint(model: nn.Module) -> str:
    """:return: a short hash of the model's parameters and buffers"""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


#: attributes that make a dataset's identity in the cache key
_IDENTITY = ("path", "root", "split", "seed", "num", "grid", "indices")


def _dataset_token(dataset: Dataset) -> str:
    """
    identity of a (subset of a) dataset: its class, its :data:`_IDENTITY` attributes and, for a
    dataset wrapping another (an attribute ``dataset``, as :class:`~.synthetic.Jigsaw`), the
    wrapped one's
    """
    parts = []
    while isinstance(dataset, Subset):
        parts.append(hashlib.sha1(np.asarray(dataset.indices).tobytes()).hexdigest()[:12])
        dataset = dataset.dataset
    if isinstance(dataset, ConcatDataset):
        parts += [_dataset_token(d) for d in dataset.datasets]
    else:
        for attr in _IDENTITY:
            value = getattr(dataset, attr, None)
            if isinstance(value, np.ndarray):
                value = hashlib.sha1(value.tobytes()).hexdigest()[:12]
            if value is not None:
                parts.append(f"{attr}={value}")
        inner = getattr(dataset, "dataset", None)
        if isinstance(inner, Dataset):
            parts.append(_dataset_token(inner))
    return f"{type(dataset).__name__}({','.join(map(str, parts))})"


def feature_batches(
    encoder: Callable[[Tensor], Tensor],
    dataset: Dataset,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "cpu",
    desc: str = "features",
    progress: bool = True,
) -> Iterator[Tuple[Tensor, Tensor]]:
    """
    The features of ``dataset`` batch by batch, for callers that use each batch as it comes
    (the command line writes rows as batches finish); :func:`compute_features` concatenates them.

    :param encoder: images to :math:`B \\times D` features
    :param dataset: yields ``(image tensor, label)``
    :param batch_size: batch size (small batches run fastest on a CPU: DenseNet-BC-100 runs
        about twice as fast at 16 as at 250)
    :param num_workers: data loader workers
    :param device: device the encoder runs on (the caller moves the model there)
    :param desc: progress bar label
    :param progress: show a progress bar
    :return: an iterator of float32 features :math:`B \\times D` and int64 labels :math:`B`,
        on the CPU, in the order of the dataset
    """
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
        with torch.no_grad():
            z = encoder(x.to(device)).float().flatten(1).cpu()
        yield z, torch.as_tensor(y, dtype=torch.long)


def compute_features(
    encoder: Callable[[Tensor], Tensor],
    dataset: Dataset,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "cpu",
    desc: str = "features",
    progress: bool = True,
) -> Tuple[Tensor, Tensor]:
    """
    :param encoder: images to :math:`B \\times D` features
    :param dataset: yields ``(image tensor, label)``
    :param batch_size: batch size, see :func:`feature_batches`
    :param num_workers: data loader workers
    :param device: device the encoder runs on (the caller moves the model there)
    :param desc: progress bar label
    :param progress: show a progress bar
    :return: float32 features :math:`N \\times D` and int64 labels :math:`N`, on the CPU
    """
    batches = feature_batches(encoder, dataset, batch_size, num_workers, device, desc, progress)
    zs, ys = zip(*batches)
    return torch.cat(zs), torch.cat(ys)


def cached_features(
    encoder: Callable[[Tensor], Tensor],
    dataset: Dataset,
    key: str,
    directory: Optional[Path] = None,
    **kwargs,
) -> Tuple[Tensor, Tensor]:
    """
    :func:`compute_features`, stored in ``directory`` under a hash of ``key`` and the dataset's
    identity (class, file, split, subset indices) and reused when present.

    :param encoder: images to features
    :param dataset: the data
    :param key: identifies the encoder (backbone name and weights fingerprint)
    :param directory: cache folder; default ``cache_dir() / "features"``; ``False``-like ``""``
        is not allowed, pass ``None``
    :param kwargs: passed to :func:`compute_features`
    :return: features and labels
    """
    directory = Path(directory) if directory is not None else cache_dir() / "features"
    token = f"{key}|{_dataset_token(dataset)}|{len(dataset)}"
    name = hashlib.sha1(token.encode()).hexdigest()[:20]
    path = directory / f"{key.split('|')[0]}_{name}.pt"
    if path.exists():
        payload = torch.load(path, map_location="cpu")
        if payload.get("token") == token:
            return payload["z"], payload["y"]
    z, y = compute_features(encoder, dataset, **kwargs)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"token": token, "z": z, "y": y}, tmp)
    tmp.replace(path)
    return z, y


class FeatureBenchmark(Benchmark):
    """
    A benchmark over precomputed features: its datasets yield ``(features, label)``. Detectors
    evaluated on it take features as input (identity encoder, linear head as model).

    :param train: fit features and labels
    :param test_id: ID test features and labels
    :param ood: OOD test features by dataset name
    """

    def __init__(
        self, train: Tuple[Tensor, Tensor], test_id: Tuple[Tensor, Tensor], ood: Dict[str, Tensor]
    ):
        self.train = train
        self.test_id = test_id
        self.ood = ood
        self.ood_names = list(ood)

    def train_set(self) -> Dataset:
        return TensorDataset(*self.train)

    def _ood_set(self, name: str) -> Dataset:
        z = self.ood[name]
        return TensorDataset(z, torch.full((len(z),), -1, dtype=torch.long))

    def test_sets(self, known: bool = True, unknown: bool = True) -> List[Dataset]:
        if known and unknown:
            return [
                ConcatDataset([TensorDataset(*self.test_id), self._ood_set(n)]) for n in self.ood
            ]
        if unknown:
            return [self._ood_set(n) for n in self.ood]
        if known:
            return [TensorDataset(*self.test_id)]
        raise ValueError("known and unknown cannot both be false")
