"""
A fitted detector's state, built from the upstream detector's public attributes, and state files:
the state with metadata (for ``line-ood``: the backbone's name, the class names, the training
data), written atomically.

A state is ``{"version": STATE_VERSION, "hyperparameters": {...}, "weight", "bias",
"class_means", "class_counts", "activation_sample"}`` (state version 2, as line_plugin 0.2 and
0.3 wrote it; 0.1 wrote state version 1, without the activation sample). A file holds
``{"format": FORMAT, "version": FILE_VERSION, "line": state, "metadata": {...}}`` (file version 1
since 0.2) and loads with ``torch.load(..., weights_only=True)``. Files of version 0.1 (a bare
state from ``LINe.save``, or a ``line-ood fit`` file) are read as well.
"""

import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from pytorch_ood.api import RequiresFittingException

FORMAT = "line_plugin state"
#: the version of the file around the state (its ``"format"``, ``"line"`` and ``"metadata"``)
FILE_VERSION = 1
#: the version of the state this line_plugin writes
STATE_VERSION = 2
#: the marker of ``line-ood fit`` files of version 0.1
_CLI_FORMAT_0_1 = "line-ood state"

PathLike = Union[str, os.PathLike]
#: the state versions that load: 1 (line_plugin 0.1) and 2 (0.2 on)
STATE_VERSIONS = (1, STATE_VERSION)
_KEYS = {"version", "hyperparameters", "weight", "bias", "class_means", "class_counts"}


def state_dict(detector) -> Dict:
    """
    :param detector: a fitted :class:`line_plugin.LINe`
    :return: its state: head, class statistics, hyperparameters, activation sample, on the CPU
    :raises RequiresFittingException: before fitting
    """
    if detector.class_means is None:
        raise RequiresFittingException("LINe has to be fitted before saving its state")
    sample = detector.activation_sample
    return {
        "version": STATE_VERSION,
        "hyperparameters": detector.hyperparameters,
        "weight": detector.weight.cpu(),
        "bias": detector.bias.cpu(),
        "class_means": detector.class_means.cpu(),
        "class_counts": detector.class_counts.cpu(),
        "activation_sample": None if sample is None else sample.cpu(),
    }


def checked_state(
    state: Dict, weight: torch.Tensor, bias: torch.Tensor
) -> Tuple[Dict, np.ndarray, np.ndarray, Optional[torch.Tensor]]:
    """
    :param state: a state of :func:`state_dict` (or of version 0.1)
    :param weight: the final layer of the detector it is for, :math:`K \\times D`
    :param bias: and its bias
    :return: the hyperparameters, the class means (float64) and counts (int64), and the
        activation sample (float32, or ``None``), exactly as stored
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
        if tuple(state[name].shape) != tuple(weight.shape):
            raise ValueError(
                f"the state's {name} has shape {tuple(state[name].shape)}, but this "
                f"detector's final layer is {tuple(weight.shape)} (K x D)"
            )
    if not (
        torch.equal(state["weight"].to(weight), weight)
        and torch.equal(state["bias"].to(bias), bias)
    ):
        raise ValueError(
            "the state was fitted for another final layer (its weights differ from this "
            "detector's): fit again for this model"
        )
    sample = state.get("activation_sample")
    return (
        dict(state["hyperparameters"]),
        state["class_means"].to("cpu", torch.float64).numpy().copy(),
        state["class_counts"].to("cpu", torch.int64).numpy().copy(),
        None if sample is None else sample.float().clone(),
    )


def save_state(path: PathLike, detector, **metadata) -> None:
    """
    Write ``detector``'s state and ``metadata`` to ``path``: to a temporary file in the same
    folder first, renamed into place, so that no reader sees a half-written file.

    :param path: the file to write
    :param detector: a fitted :class:`~line_plugin.core.LINe`
    :param metadata: plain values (strings, numbers, lists, ``None``) saved beside the state
    :raises RequiresFittingException: if the detector is not fitted
    """
    payload = {"format": FORMAT, "version": FILE_VERSION, "line": detector.state_dict()}
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
        if payload.get("version") != FILE_VERSION:
            raise ValueError(f"{str(path)!r}: unsupported state version {payload.get('version')}")
        return payload["line"], payload["metadata"]
    if payload.get("format") == _CLI_FORMAT_0_1:
        keys = ("backbone", "classes", "source")
        return payload["line"], {key: payload.get(key) for key in keys}
    if "class_means" in payload:
        return payload, {}
    raise ValueError(f"{str(path)!r} is not a saved LINe state")
