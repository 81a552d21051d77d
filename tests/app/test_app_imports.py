"""
The application's imports run one way: the CLI over the pipeline and the evaluation, both over
the feature extractor, zoo and data; inside the evaluation, each module imports only those
before it in the flow (data sets, features, baseline detectors, the table of known collapses,
the report, the runner). Read from the sources, so that a lazy import inside a function counts
too.
"""

import subprocess
import sys

import pytest
from imports import PACKAGE
from imports import imported_line_plugin as imported

#: the evaluation's modules in the order of the flow; each may import only those before it
FLOW = [
    "metrics",
    "synthetic",
    "cifar10",
    "features",
    "baselines",
    "auto_row",
    "collapses",
    "report",
    "runner",
]


def test_imported_reads_relative_absolute_and_lazy_imports():
    source = "\n".join(
        [
            "import torch",
            "from . import features",
            "from .metrics import metrics",
            "from ..zoo import load_model",
            "import line_plugin.cli",
            "def f():",
            "    from ..data import OOD_SETS",  # a lazy import counts too
        ]
    )
    found = imported(PACKAGE / "evaluation" / "runner.py", source)
    assert found == {
        "line_plugin.evaluation.features",
        "line_plugin.evaluation.metrics",
        "line_plugin.zoo",
        "line_plugin.cli",
        "line_plugin.data",
    }


@pytest.mark.parametrize("name", FLOW)
def test_evaluation_modules_import_only_earlier_ones(name):
    found = imported(PACKAGE / "evaluation" / f"{name}.py")
    inside = {m.split(".")[2] for m in found if m.startswith("line_plugin.evaluation.")}
    later = inside - set(FLOW[: FLOW.index(name)])
    assert not later, f"evaluation/{name}.py imports {sorted(later)}"
    assert not any(m.startswith("line_plugin.cli") for m in found)


#: the modules of the data and zoo packages in the order of the flow, as their docstrings list them
PACKAGES = {
    "data": ["shared", "images", "subsets", "benchmark"],
    "zoo": ["densenet", "model", "checkpoint", "registry"],
}


@pytest.mark.parametrize("name", ["data", "zoo"])
def test_data_and_zoo_import_no_evaluation_or_cli(name):
    sources = sorted((PACKAGE / name).glob("*.py"))
    assert {p.stem for p in sources} == {"__init__", *PACKAGES[name]}
    for path in sources:
        found = imported(path)
        reach = {m for m in found if m.startswith(("line_plugin.evaluation", "line_plugin.cli"))}
        assert not reach, f"{name}/{path.name} imports {sorted(reach)}"


def test_data_does_not_import_the_zoo():
    # the zoo reads the shared folder's location from data, never the other way round
    found = {m for p in (PACKAGE / "data").glob("*.py") for m in imported(p)}
    assert not any(m.startswith("line_plugin.zoo") for m in found)


@pytest.mark.parametrize("package", list(PACKAGES))
def test_data_and_zoo_modules_import_only_earlier_ones(package):
    flow = PACKAGES[package]
    for name in flow:
        found = imported(PACKAGE / package / f"{name}.py")
        inside = {m.split(".")[2] for m in found if m.startswith(f"line_plugin.{package}.")}
        later = inside - set(flow[: flow.index(name)])
        assert not later, f"{package}/{name}.py imports {sorted(later)}"


def test_features_and_report_do_not_reach_back():
    # the cache keys are generic: features.py needs no dataset class of the benchmark, only the
    # package's one feature extractor
    assert imported(PACKAGE / "evaluation" / "features.py") == {"line_plugin.features"}
    # the result type lives with its rendering: report.py does not import the runner
    assert "line_plugin.evaluation.runner" not in imported(PACKAGE / "evaluation" / "report.py")


def test_tables_and_words_of_the_command_line_load_no_torch():
    # what the CLI imports before it parses: the library's own tables, defaults and words
    modules = ["catalog", "batching", "messages", "calibration", "plugin.presets"]
    code = (
        "import sys\n"
        + "".join(f"import line_plugin.{m}\n" for m in modules)
        + "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'timm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["pipeline", "evaluation"])
def test_pipeline_and_evaluation_import_no_cli(name):
    for path in (PACKAGE / name).glob("*.py"):
        assert not {m for m in imported(path) if m.startswith("line_plugin.cli")}, path.name


def test_score_imports_no_evaluation():
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name != "benchmark.py":
            assert not {m for m in imported(path) if m.startswith("line_plugin.evaluation")}, path
