"""
The LINe detector as pytorch-ood holds it (:mod:`line_plugin.core.line` is the upstream pull
request's ``pytorch_ood/detector/line.py``). Imports torch, numpy and pytorch_ood only.
"""

from .line import LINe

__all__ = ["LINe"]
