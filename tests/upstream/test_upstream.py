"""
The pull request to pytorch-ood (``upstream/``): the committed patch is current, applies cleanly
to the repository files at the pinned commit and (its ``src/`` part) to the 0.4.0 release, adds
LINe to every place the repository's README.md lists, and passes what pytorch-ood's CI runs: its
whole test suite, ruff with its configuration, Python 3.8 (``vermin``), the docs with warnings as
errors, a minimal install. The comparison on real features is in
``tests/realdata/test_upstream_densenet.py``.
"""

import ast
import difflib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from upstream_build import (
    build_docs,
    installed,
    make_patch,
    patched_release,
    patched_tree,
    pristine_tree,
    run_python,
    run_repository_tests,
)

mp = make_patch()
#: the repository files the patch edits, and the new ones
EDITED = sorted(mp.EDITS)
NEW = sorted([mp.DETECTOR, mp.DOCS_PAGE, *mp.COPIED])


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


def test_pinned_commit():
    assert re.fullmatch(r"[0-9a-f]{40}", mp.BASE)
    assert mp.BASE in mp.PATCH.read_text().splitlines()[0]


def test_patch_file_list():
    paths = re.findall(r"^\+\+\+ b/(\S+)$", mp.PATCH.read_text(), re.M)
    assert paths == sorted(EDITED + NEW)


def test_patch_applies_cleanly_to_the_repository():
    tree, output = patched_tree()
    assert output.count("patching file") == len(EDITED) + len(NEW)
    for path in mp.COPIED:
        assert (tree / path).read_bytes() == (mp.FILES / path).read_bytes()


def test_docs_page_is_the_four_line_stub():
    tree = patched_tree()[0]
    dice = (tree / "docs/detectors/dice.rst").read_text()
    assert (tree / mp.DOCS_PAGE).read_text() == dice.replace("DICE", "LINe").replace(
        "dice", "line"
    )
    assert ".. rubric:: Examples" in (tree / mp.DETECTOR).read_text()


def test_every_registry_lists_line():
    tree = patched_tree()[0]
    before, after = pristine_tree(), tree
    for path in EDITED:
        old, new = (before / path).read_text(), (after / path).read_text()
        assert new.lower().count("line") > old.lower().count("line"), path
        # the patch only adds lines (and a name to the diagram's line and an import line)
        diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="")
        removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
        assert len(removed) == (path in (mp.DIAGRAM, mp.FRACTIONS)), path
    assert '"LINe.p_a"' in (tree / mp.FRACTIONS).read_text()
    assert "   detectors/dice\n   detectors/line\n" in (tree / mp.TOCTREE).read_text()
    assert "pytorch_ood.detector.LINe " in (tree / mp.DIAGRAM).read_text()
    assert ".. [#LINe]" in (tree / "README.rst").read_text()
    for registry in (mp.SMOKE, mp.DEVICES):
        assert (
            '"LINe",\n                lambda: (\n                    lambda model: LINe('
            in (tree / registry).read_text()
        )


def test_every_place_the_repository_readme_lists():
    # README.md of the repository files names each file a new detector adds to or changes
    readme = (mp.REPOSITORY / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w/.]+\.(?:py|rst))`", readme, re.M))
    patched = set(EDITED + NEW)
    # tests/test_info.py: segmentation detectors only; signatures and hpo walk __all__; conf.py
    # builds the table from info
    untouched = {"tests/test_info.py", "tests/detectors/test_signatures.py", "docs/conf.py"}
    assert listed - untouched <= patched, listed - untouched - patched
    assert {"tests/detectors/test_device_handling.py", "docs/core_api/detectors.rst"} <= patched


def test_detector_file_is_the_core_module():
    # only the import lines and the autoclass path differ
    core = mp.CORE.read_text()
    detector = (patched_tree()[0] / mp.DETECTOR).read_text()
    assert _without_imports(detector) == _without_imports(core.replace(*mp.AUTOCLASS))
    assert _imported_names(detector) == _imported_names(core)
    assert "line_plugin" not in detector
    froms = [n for n in ast.walk(ast.parse(detector)) if isinstance(n, ast.ImportFrom)]
    assert not [n.module for n in froms if n.level == 0 and n.module.startswith("pytorch_ood")]
    assert len(detector.splitlines()) <= 250
    assert "torch.distributed" not in detector
    # pytorch-ood's install_requires (the minimal install of its CI) and the standard library
    tops = {name.split(".")[0] for name, _ in _imported_names(detector)}
    froms = {n.module.split(".")[0] for n in ast.walk(ast.parse(detector)) if _absolute(n)}
    assert froms | (tops & {"numpy", "torch"}) <= {"logging", "typing", "numpy", "torch"} | {
        "typing_extensions"
    }


def _absolute(node) -> bool:
    return isinstance(node, ast.ImportFrom) and node.level == 0


def test_no_line_of_the_new_files_is_longer_than_99_characters():
    tree = patched_tree()[0]
    for path in NEW:
        longest = max(len(line) for line in (tree / path).read_text().splitlines())
        assert longest <= 99, (path, longest)


def test_exports():
    before = (pristine_tree() / mp.EXPORTS).read_text().splitlines()
    after = (patched_tree()[0] / mp.EXPORTS).read_text().splitlines()
    added = [line for line in after if line not in before]
    assert added == ["from .line import LINe", '    "LINe",']
    assert [line for line in after if line in before] == before


@pytest.mark.slow
def test_src_part_applies_to_the_release_and_installs():
    tree, output = patched_release()
    assert output.count("patching file") == 2
    code = (
        "import pytorch_ood, torch, pytorch_ood.detector as d; "
        "print(pytorch_ood.__file__); print(d.LINe.__module__); print('LINe' in d.__all__); "
        "w, x = torch.randn(3, 8), torch.rand(30, 8); "
        "s = d.LINe(None, w).fit_features(x, torch.arange(30) % 3).predict_features(x); "
        "print(tuple(s.shape), bool(torch.isfinite(s).all()))"
    )
    run = run_python(["-c", code])
    assert run.returncode == 0, run.stderr
    file, module, exported, scores = run.stdout.splitlines()
    assert file.startswith(str(installed())), "the patched package must shadow the installed one"
    assert (module, exported, scores) == ("pytorch_ood.detector.line", "True", "(30,) True")
    # as the minimal-install job of pytorch-ood's CI: every public subpackage imports
    packages = ["detector", "loss", "metrics", "model", "utils", "benchmark"]
    packages += ["dataset.img", "dataset.txt", "dataset.audio"]
    code = "import importlib; " + "; ".join(
        f"importlib.import_module('pytorch_ood.{name}')" for name in packages
    )
    run = run_python(["-c", code])
    assert run.returncode == 0, run.stderr


@pytest.mark.slow
def test_pytorch_oods_whole_test_suite_passes():
    run = run_repository_tests()
    tail = run.stdout[-5000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " failed" not in run.stdout and " error" not in run.stdout, tail
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|skipped)", run.stdout)}
    # unpatched: 43 passed and 8 skipped (the CUDA device tests); test_line.py adds 22 tests, one
    # of them for CUDA, and the device tests have one subtest more
    assert counts["passed"] + counts.get("skipped", 0) == 43 + 8 + 22, tail
    if not torch.cuda.is_available():
        assert counts == {"passed": 64, "skipped": 9}, tail


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="sphinx is not installed")
def test_the_modules_docs_build_without_warnings():
    run = build_docs()
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr[-3000:]


#: vermin's command (it has no ``python -m vermin``), beside this interpreter or on the path
VERMIN = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")


@pytest.mark.skipif(VERMIN is None, reason="vermin is not installed")
def test_the_module_and_its_test_run_on_python_3_8():
    # pytorch-ood's CI runs the tests on Python 3.8 to 3.13
    tree = patched_tree()[0]
    files = [str(tree / mp.DETECTOR), str(tree / mp.COPIED[0])]
    cmd = [VERMIN, "-t=3.8-", "--no-tips", "--violations", *files]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _ruff(tree, files) -> list:
    """the files that fail pytorch-ood's own ruff configuration (its pyproject.toml)"""
    failing = []
    for path in files:
        for cmd in (["check"], ["format", "--check"]):
            run = subprocess.run(
                [sys.executable, "-m", "ruff", *cmd, "--no-cache", path],
                cwd=tree,
                capture_output=True,
                text=True,
            )
            if run.returncode != 0:
                failing.append((path, cmd[0], run.stdout[-1000:]))
    return failing


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_patched_files_pass_upstream_lint():
    # the Python files the patch touches, with pytorch-ood's pyproject.toml: clean before the
    # patch, clean after it
    files = [path for path in EDITED + NEW if path.endswith(".py")]
    assert _ruff(pristine_tree(), [f for f in files if f in EDITED]) == []
    assert _ruff(patched_tree()[0], files) == []


def test_agreement_script_with_the_authors_algorithm(capsys):
    # upstream/check_agreement.py on its random features: masks identical, scores to 1e-9
    spec = importlib.util.spec_from_file_location(
        "check_agreement", mp.HERE / "check_agreement.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main() == 0
    out = capsys.readouterr().out
    assert out.count("masks identical: True") == len(module.SETTINGS)
