"""
Penultimate features of a backbone (:func:`line_plugin.features.compute_features`), computed once
and cached on disk (``$LINE_OOD_CACHE`` or ``~/.cache/line_plugin``), for the comparison.
"""

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..features import compute_features


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


def cached_features(
    encoder: Callable[[Tensor], Tensor],
    dataset: Dataset,
    key: str,
    directory: Optional[Path] = None,
    **kwargs,
) -> Tuple[Tensor, Tensor]:
    """
    :func:`line_plugin.features.compute_features`, stored in ``directory`` under a hash of
    ``key`` and the dataset's identity (class, file, split, subset indices) and reused when
    present.

    :param encoder: images to features
    :param dataset: the data
    :param key: identifies the encoder (backbone name and weights fingerprint)
    :param directory: cache folder; default ``cache_dir() / "features"``; ``False``-like ``""``
        is not allowed, pass ``None``
    :param kwargs: passed to :func:`~line_plugin.features.compute_features`
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
