"""
The package's layers import downwards only: core <- adapter <- plugin <- application (data, zoo,
evaluation, cli). The core imports nothing but the standard library, torch, numpy and
pytorch_ood (it is the upstream pull request's detector module).
"""

import sys

import pytest
from imports import PACKAGE, imported, imported_line_plugin, module_name

RANKS = {"core": 0, "adapter": 1, "plugin": 2}
APPLICATION = 3
#: what the core module may import besides the standard library
CORE_DEPENDENCIES = {"numpy", "torch", "pytorch_ood", "typing_extensions"}
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def rank(module: str) -> int:
    """the layer of a ``line_plugin`` module; the package root re-exports the plugin layer"""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("LINe", "PRESETS", "__version__"):
        return RANKS["plugin"]
    if parts[1] in ("Split", "split_model", "default_transform"):
        return RANKS["adapter"]
    return RANKS.get(parts[1], APPLICATION)


def upward(path, source=None):
    own = rank(module_name(path))
    return sorted(m for m in imported_line_plugin(path, source) if rank(m) > own)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    assert upward(path) == [], f"{path.relative_to(PACKAGE)} imports a layer above it"


def test_every_layer_is_there():
    layers = {rank(module_name(p)) for p in SOURCES}
    assert layers == {0, 1, 2, APPLICATION}


def test_core_imports_only_torch_numpy_and_pytorch_ood():
    for path in (PACKAGE / "core").rglob("*.py"):
        tops = {m.split(".")[0] for m in imported(path)} - {""}
        foreign = tops - CORE_DEPENDENCIES - set(sys.stdlib_module_names)
        assert foreign <= {"line_plugin"} and not any(
            m.split(".")[:2] != ["line_plugin", "core"] for m in imported_line_plugin(path)
        ), (path.name, foreign)


@pytest.mark.parametrize(
    "where,source",
    [
        ("core/line.py", "from ..adapter import split_model"),
        ("core/line.py", "def f():\n    from line_plugin import LINe"),
        ("adapter/split.py", "from ..plugin.state import read_state"),
        ("adapter/split.py", "from .. import zoo"),
        ("plugin/detector.py", "from ..evaluation import runner"),
        ("plugin/detector.py", "import line_plugin.cli"),
    ],
)
def test_an_upward_import_is_caught(where, source):
    assert upward(PACKAGE / where, source) != []
