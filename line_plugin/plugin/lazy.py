"""
Exports imported on first use (:pep:`562`), for the package and its plugin layer: the command
line parses its arguments without loading torch, and the layers' packages import nothing heavy
until a name of theirs is asked for.
"""

import importlib
import sys
from typing import Any, Callable, Dict


def lazy_exports(package: str, exports: Dict[str, str]) -> Callable[[str], Any]:
    """
    :param package: the importing package's ``__name__``
    :param exports: exported name -> the module it comes from, relative to ``package``
    :return: the package's ``__getattr__``: imports the name's module on first use and keeps
        the name in the package
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
