"""
Where the shared, read-only material lies: the ``data`` and ``models`` folders
(``../shared/<kind>`` beside the repository, or ``$LINE_OOD_DATA`` / ``$LINE_OOD_MODELS``).
"""

import os
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]

_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir(kind: str = "data") -> Path:
    """
    Locate a folder of the shared material: ``data`` or ``models``.

    The folder is taken from ``$LINE_OOD_DATA`` (``$LINE_OOD_MODELS``) if set, else
    ``../shared/<kind>`` relative to the repository root, else ``../shared/<kind>`` relative to
    the current working directory.

    :param kind: ``"data"`` or ``"models"``
    :return: the existing folder
    :raises ValueError: for another ``kind``
    :raises FileNotFoundError: if no candidate exists; the message names the paths tried
    """
    if kind not in ("data", "models"):
        raise ValueError(f"kind must be 'data' or 'models', got {kind!r}")
    env = f"LINE_OOD_{kind.upper()}"
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        if path.is_dir():
            return path
        raise FileNotFoundError(f"${env} is set to {str(path)!r}, which is not a folder")
    tried = [_REPO_ROOT.parent / "shared" / kind, Path.cwd().parent / "shared" / kind]
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"No {kind} folder found; tried {', '.join(repr(str(p)) for p in tried)}. "
        f"Set ${env} to the folder holding the {kind}."
    )


def default_data_dir() -> Path:
    """
    :return: the shared data folder (see :func:`shared_dir`)
    :raises FileNotFoundError: if it cannot be found
    """
    return shared_dir("data")


def default_models_dir() -> Path:
    """
    :return: the shared models folder (see :func:`shared_dir`)
    :raises FileNotFoundError: if it cannot be found
    """
    return shared_dir("models")
