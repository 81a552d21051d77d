"""
State files: a fitted detector's :meth:`~line_plugin.core.LINe.state_dict` with metadata (for
``line-ood``: the backbone's name, the class names, the training data), written atomically.

A file holds ``{"format": FORMAT, "version": VERSION, "line": state, "metadata": {...}}`` and
loads with ``torch.load(..., weights_only=True)``. Files of version 0.1 (a bare state from
``LINe.save``, or a ``line-ood fit`` file) are read as well.
"""

import os
import tempfile
from pathlib import Path
from typing import Dict, Tuple, Union

import torch

FORMAT = "line_plugin state"
VERSION = 1
#: the marker of ``line-ood fit`` files of version 0.1
_CLI_FORMAT_0_1 = "line-ood state"

PathLike = Union[str, os.PathLike]


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
