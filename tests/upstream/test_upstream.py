"""
The pull request to pytorch-ood (``upstream/``): the committed patch is current, applies cleanly
to the 0.4.0 sdist, and the patched package imports, passes the patch's own tests and its linter.
The comparison on real features is in ``tests/realdata/test_upstream_densenet.py``.
"""

import ast
import importlib.util
import re
import subprocess
import sys

import pytest
from upstream_build import installed, make_patch, patched_tree, pristine_tree, run_python

mp = make_patch()


def _import_lines(text: str) -> set:
    return {
        i
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for i in range(node.lineno - 1, node.end_lineno)
    }


def _without_imports(text: str) -> list:
    lines = text.splitlines()
    drop = _import_lines(text)
    return [line for i, line in enumerate(lines) if i not in drop and line.strip()]


def _imported_names(text: str) -> list:
    return sorted(
        (alias.name, alias.asname)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    )


def test_patch_is_current():
    text = mp.make_patch(pristine_tree())
    assert mp.PATCH.read_bytes() == text.encode(), "run: python upstream/make_patch.py"


def test_patch_file_list():
    paths = re.findall(r"^\+\+\+ b/(\S+)$", mp.PATCH.read_text(), re.M)
    assert paths == sorted([mp.DETECTOR, mp.EXPORTS, *mp.COPIED])


def test_patch_applies_cleanly():
    tree, output = patched_tree()
    assert output.count("patching file") == 2 + len(mp.COPIED)
    for path in mp.COPIED:
        assert (tree / path).read_bytes() == (mp.FILES / path).read_bytes()


def test_detector_file_is_the_core_module():
    # only the import lines and the autoclass path differ
    core = mp.CORE.read_text()
    detector = (patched_tree()[0] / mp.DETECTOR).read_text()
    assert _without_imports(detector) == _without_imports(core.replace(*mp.AUTOCLASS))
    assert _imported_names(detector) == _imported_names(core)
    assert "line_plugin" not in detector
    froms = [n for n in ast.walk(ast.parse(detector)) if isinstance(n, ast.ImportFrom)]
    assert not [n.module for n in froms if n.level == 0 and n.module.startswith("pytorch_ood")]


def test_exports():
    before = (pristine_tree() / mp.EXPORTS).read_text().splitlines()
    after = (patched_tree()[0] / mp.EXPORTS).read_text().splitlines()
    added = [line for line in after if line not in before]
    assert added == ["from .line import LINe", '    "LINe",']
    assert [line for line in after if line in before] == before


def test_patched_package_imports():
    code = (
        "import pytorch_ood, pytorch_ood.detector as d; "
        "print(pytorch_ood.__file__); print(d.LINe.__module__); print('LINe' in d.__all__); "
        "print(d.LINe.__doc__ is not None and d.LINe.info.ai_coded)"
    )
    run = run_python(["-c", code])
    assert run.returncode == 0, run.stderr
    file, module, exported, ai_coded = run.stdout.split()
    assert file.startswith(str(installed())), "the patched package must shadow the installed one"
    assert (module, exported, ai_coded) == ("pytorch_ood.detector.line", "True", "True")


def test_patch_own_tests_pass():
    test_file = patched_tree()[0] / "tests" / "detectors" / "test_line.py"
    run = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)])
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed[1]) >= 20, run.stdout[-2000:]
    assert " failed" not in run.stdout and " error" not in run.stdout


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_patched_files_pass_upstream_lint():
    # pytorch-ood's own ruff configuration (its pyproject.toml) on the files the patch touches
    tree = patched_tree()[0]
    files = [mp.DETECTOR, mp.EXPORTS, "tests/detectors/test_line.py"]
    for cmd in (["check"], ["format", "--check"]):
        run = subprocess.run(
            [sys.executable, "-m", "ruff", *cmd, "--no-cache", *files],
            cwd=tree,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr
