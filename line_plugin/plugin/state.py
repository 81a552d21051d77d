"""
A fitted detector's state, built from the upstream detector's public attributes, and state files:
the state with metadata (for ``line-ood``: the backbone's name, the class names, the training
data), written atomically.

A state is ``{"version": 2, "hyperparameters": {...}, "weight", "bias", "class_means",
"class_counts", "activation_sample"}``, as version 0.2 wrote it (version 0.1 wrote version 1,
without the activation sample). A file holds ``{"format": FORMAT, "version": VERSION, "line":
state, "metadata": {...}}`` and loads with ``torch.load(..., weights_only=True)``. Files of
version 0.1 (a bare state from ``LINe.save``, or a ``line-ood fit`` file) are read as well.
"""

import os
import tempfile
from pathlib import Path
from typing import Dict, Tuple, Union

import torch
from pytorch_ood.api import RequiresFittingException

from . import checks

FORMAT = "line_plugin state"
VERSION = 1
#: the marker of ``line-ood fit`` files of version 0.1
_CLI_FORMAT_0_1 = "line-ood state"

PathLike = Union[str, os.PathLike]
#: the state versions that load: 1 (line_plugin 0.1) and 2 (0.2 on)
STATE_VERSIONS = (1, 2)
_KEYS = {"version", "hyperparameters", "weight", "bias", "class_means", "class_counts"}


def state_dict(detector) -> Dict:
    """
    :param detector: a fitted :class:`line_plugin.LINe`
    :return: its state: head, class statistics, hyperparameters, activation sample, on the CPU
    :raises RequiresFittingException: before fitting
    """
    if detector.class_means is None:
        raise RequiresFittingException("LINe has to be fitted before saving its state")
    hyperparameters = detector.hyperparameters
    sample = detector.activation_sample
    return {
        "version": 2,
        "hyperparameters": hyperparameters,
        "weight": detector.weight.cpu(),
        "bias": detector.bias.cpu(),
        "class_means": detector.class_means.cpu(),
        "class_counts": detector.class_counts.cpu(),
        "activation_sample": None if sample is None else sample.cpu(),
    }


def load_state_dict(detector, state: Dict):
    """
    Restore ``state`` into ``detector``: the masks are derived again from the class means, bit
    for bit.

    :return: ``detector``
    :raises ValueError: if the state is malformed, of an unknown version, or was fitted for
        another final layer (saying how to refit)
    """
    missing = _KEYS - set(state) if isinstance(state, dict) else _KEYS
    if missing:
        raise ValueError(f"not a LINe state: it lacks {sorted(missing)}")
    if state["version"] not in STATE_VERSIONS:
        raise ValueError(
            f"unsupported LINe state version {state['version']!r} (this line_plugin reads "
            f"{STATE_VERSIONS}): fit the detector again (LINe.fit) and save it anew"
        )
    for name in ("weight", "class_means"):
        if tuple(state[name].shape) != tuple(detector.weight.shape):
            raise ValueError(
                f"the state's {name} has shape {tuple(state[name].shape)}, but this "
                f"detector's final layer is {tuple(detector.weight.shape)} (K x D)"
            )
    if not (
        torch.equal(state["weight"].to(detector.weight), detector.weight)
        and torch.equal(state["bias"].to(detector.bias), detector.bias)
    ):
        raise ValueError(
            "the state was fitted for another final layer (its weights differ from this "
            "detector's): fit again for this model"
        )
    hp = state["hyperparameters"]
    detector.p_a, detector.p_w, detector.clip = hp["p_a"], hp["p_w"], hp["clip"]  # checked
    quantile = hp.get("clip_quantile")  # the stored clip is the fitted one: kept as it is
    detector._clip_quantile = (
        None if quantile is None else checks.fraction("clip_quantile", quantile)
    )
    sample = state.get("activation_sample")
    detector.activation_sample = None if sample is None else sample.float().clone()
    detector.class_counts = state["class_counts"].to("cpu", torch.int64).clone()
    detector.class_means = state["class_means"].to("cpu", torch.float64).clone()
    return detector


def save_state(path: PathLike, detector, **metadata) -> None:
    """
    Write ``detector``'s state and ``metadata`` to ``path``: to a temporary file in the same
    folder first, renamed into place, so that no reader sees a half-written file.

    :param path: the file to write
    :param detector: a fitted :class:`~line_plugin.core.LINe`
    :param metadata: plain values (strings, numbers, lists, ``None``) saved beside the state
    :raises RequiresFittingException: if the detector is not fitted
    """
    payload = {"format": FORMAT, "version": VERSION, "line": detector.state_dict()}
    payload["metadata"] = metadata
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_state(path: PathLike) -> Tuple[Dict, Dict]:
    """
    :param path: a file written by :func:`save_state` (or by version 0.1)
    :return: the detector's state and the metadata
    :raises FileNotFoundError: if there is no such file
    :raises ValueError: if the file holds no LINe state
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"state file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle or zip errors: not a state file
        raise ValueError(f"{str(path)!r} is not a saved LINe state") from e
    if not isinstance(payload, dict):
        raise ValueError(f"{str(path)!r} is not a saved LINe state")
    if payload.get("format") == FORMAT:
        if payload.get("version") != VERSION:
            raise ValueError(f"{str(path)!r}: unsupported state version {payload.get('version')}")
        return payload["line"], payload["metadata"]
    if payload.get("format") == _CLI_FORMAT_0_1:
        keys = ("backbone", "classes", "source")
        return payload["line"], {key: payload.get(key) for key in keys}
    if "class_means" in payload:
        return payload, {}
    raise ValueError(f"{str(path)!r} is not a saved LINe state")
