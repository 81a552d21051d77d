"""
Exports imported on first use (:pep:`562`), for the package and its plugin layer: the command
line parses its arguments without loading torch, and the layers' packages import nothing heavy
until a name of theirs is asked for.
"""

import importlib
import sys
from typing import Any, Callable, Dict, List, Tuple


def lazy_exports(
    package: str, exports: Dict[str, str]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """
    :param package: the importing package's ``__name__``
    :param exports: exported name -> the module it comes from, relative to ``package``
    :return: the package's ``__getattr__``, which imports a name's module on first use and keeps
        the name in the package, and its ``__dir__``, which lists the names not yet imported too
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
