"""
pyproject's base dependencies are the third-party packages the library imports, no more and no
fewer; the ``bench`` extra holds what only the comparison needs (plots, pytorch-ood's KNN).
"""

import sys
from pathlib import Path

import pytest
from imports import PACKAGE, imported

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PROJECT = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
#: distribution name -> the module it installs, where they differ
MODULES = {"pillow": "PIL", "pytorch-ood": "pytorch_ood", "scikit-learn": "sklearn"}
#: imported only inside ``try``, the library runs without it: Triton (fused GPU scoring)
OPTIONAL = {"triton"}


def _module(requirement: str) -> str:
    name = requirement.split(";")[0].strip()
    for sign in "<>=!~[ ":
        name = name.split(sign)[0]
    return MODULES.get(name.lower(), name.replace("-", "_"))


def _third_party(paths) -> set:
    tops = {m.split(".")[0] for path in paths for m in imported(path)} - {"", "line_plugin"}
    return tops - set(sys.stdlib_module_names)


def test_base_dependencies_are_what_the_library_imports():
    declared = {_module(r) for r in PROJECT["dependencies"]}
    used = _third_party(PACKAGE.rglob("*.py")) - OPTIONAL - {"matplotlib"}
    assert declared == used


def test_the_bench_extra_holds_the_plot_and_knn_packages():
    bench = {_module(r) for r in PROJECT["optional-dependencies"]["bench"]}
    assert bench == {"matplotlib", "sklearn"}
    # matplotlib only where the reports plot (the benchmark's, and line-ood score --report's),
    # and lazily (the library imports without it)
    users = sorted(p for p in PACKAGE.rglob("*.py") if "matplotlib" in _third_party([p]))
    names = [p.relative_to(PACKAGE).as_posix() for p in users]
    assert names == ["evaluation/report.py", "report_html.py"]
    for path in users:
        assert "import matplotlib" not in Path(path).read_text().split("\ndef ", 1)[0], path
