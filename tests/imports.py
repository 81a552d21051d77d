"""
The ``line_plugin`` modules (and the top-level packages) a source file imports, read from the
source, so that a lazy import inside a function counts too.
"""

import ast
from pathlib import Path
from typing import Set

import line_plugin

PACKAGE = Path(line_plugin.__file__).parent


def module_name(path: Path) -> str:
    """``line_plugin/adapter/split.py`` -> ``line_plugin.adapter.split``"""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, source: str = None) -> Set[str]:
    """
    :param path: a source file under the package (its place resolves relative imports)
    :param source: its text, if not the file's
    :return: dotted names of every module (or ``module.name`` of ``from package import name``)
        it imports, absolute
    """
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.update([f"{name}.{a.name}" for a in node.names] if not node.module else [name])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def imported_line_plugin(path: Path, source: str = None) -> Set[str]:
    """:func:`imported`, restricted to the ``line_plugin`` modules"""
    return {m for m in imported(path, source) if m.split(".")[0] == "line_plugin"}
