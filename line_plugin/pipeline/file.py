"""
A pipeline's file: the detector's state file (:meth:`line_plugin.LINe.save`, one versioned
format, :mod:`line_plugin.plugin.state`) with the pipeline's :class:`~.metadata.Metadata`. It
reads the files of ``line-ood fit`` and ``LINe.save`` of every version (0.1 on).

:func:`read` gives the metadata without loading a backbone, so that a command can check its
options against it first; :meth:`line_plugin.Pipeline.load` then builds the pipeline.
"""

import os
from typing import Any, Dict, NamedTuple, Optional, Union

from ..plugin.state import read_state
from .metadata import Metadata

PathLike = Union[str, os.PathLike]


class PipelineFile(NamedTuple):
    """
    A pipeline's file, read.

    :param path: the file, as given
    :param metadata: its metadata
    :param state: the detector's state, for :meth:`line_plugin.LINe.load_state_dict`
    """

    path: str
    metadata: Metadata
    state: Dict[str, Any]

    def backbone_name(self, asked: Optional[str]) -> str:
        """
        :param asked: the backbone asked for, or ``None`` for the one the file was fitted for
        :return: the backbone to load
        :raises ValueError: if the file was fitted for a shared model of another name (for
            ``ARCH:CHECKPOINT`` names, loading the state checks the head's weights instead),
            or if neither the file nor ``asked`` names one
        """
        fitted = self.metadata.backbone
        if fitted is None:
            if asked is None:
                raise ValueError(
                    f"{self.path!r} names no backbone: pass --backbone (Python: backbone=)"
                )
            return asked
        if asked is None or fitted == asked or ":" in fitted or ":" in asked:
            return asked or fitted
        raise ValueError(
            f"{self.path!r} was fitted for backbone {fitted!r}, not {asked!r}: "
            f"pass --backbone {fitted} (Python: backbone=) or fit again"
        )


def read(path: PathLike) -> PipelineFile:
    """
    :param path: a file of :meth:`line_plugin.Pipeline.save`, ``line-ood fit`` or
        :meth:`line_plugin.LINe.save`
    :return: the file, read
    :raises FileNotFoundError: if there is no such file
    :raises ValueError: if it holds no LINe state, or metadata of a newer version
    """
    state, metadata = read_state(path)
    return PipelineFile(str(path), Metadata.from_dict(metadata, str(path)), state)


def write(path: PathLike, detector, metadata: Metadata) -> None:
    """
    Write ``detector``'s state and ``metadata`` to ``path``, atomically.

    :param path: the file
    :param detector: a fitted :class:`line_plugin.LINe`
    :param metadata: the pipeline's metadata
    """
    detector.save(path, **metadata.to_dict())
