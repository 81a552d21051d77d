"""
pytorch-ood's repository files at the pinned commit (``upstream/BASE``, with the 0.4.0 sources in
``src/``) and the 0.4.0 release, unpatched and patched with ``upstream/pytorch_ood_line.patch``,
the patched release installed without dependencies into a temporary folder, and pytorch-ood's own
tests run in the patched repository: each made once per test session. The sdist comes through
pip (cached by ``upstream/make_patch.py``); where pip cannot reach it, or the ``patch`` program is
missing, the tests that need it are skipped.
"""

import atexit
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]


def make_patch():
    """:return: the module ``upstream/make_patch.py``"""
    if "make_patch" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "make_patch", REPO / "upstream" / "make_patch.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_patch"] = module
        spec.loader.exec_module(module)
    return sys.modules["make_patch"]


def _tempdir() -> Path:
    path = tempfile.mkdtemp(prefix="line_upstream_")
    atexit.register(shutil.rmtree, path, True)
    return Path(path)


@functools.lru_cache(maxsize=None)
def _sdist() -> Tuple[Optional[Path], str]:
    mp = make_patch()
    try:
        return mp.fetch_sdist(), ""
    except mp.SdistUnavailable as e:  # the failure is cached too: pip is asked once
        return None, str(e)


def sdist() -> Path:
    """:return: the cached sdist; skips the calling test where pip cannot reach it"""
    path, why = _sdist()
    if path is None:
        pytest.skip(f"pip cannot reach the pytorch-ood {make_patch().VERSION} sdist: {why}")
    return path


@functools.lru_cache(maxsize=None)
def pristine_tree() -> Path:
    """:return: the unpatched repository files with the 0.4.0 ``src/`` (do not modify)"""
    return make_patch().base_tree(sdist(), _tempdir())


def _needs_patch() -> None:
    if shutil.which("patch") is None:
        pytest.skip("the 'patch' program is not installed")


@functools.lru_cache(maxsize=None)
def _patched_tree() -> Tuple[Path, str]:
    tree = make_patch().base_tree(sdist(), _tempdir())
    return tree, make_patch().apply_patch(tree)


def patched_tree() -> Tuple[Path, str]:
    """
    :return: the repository files with the committed patch applied, and the output of ``patch``
    :raises RuntimeError: if the patch does not apply cleanly (no offset, no fuzz)
    """
    _needs_patch()
    return _patched_tree()


@functools.lru_cache(maxsize=None)
def _patched_release() -> Tuple[Path, str]:
    tree = make_patch().extract_sdist(sdist(), _tempdir())
    return tree, make_patch().apply_patch(tree, prefix="src/", fuzz=2)


def patched_release() -> Tuple[Path, str]:
    """:return: the 0.4.0 release with the patch's ``src/`` part applied, and ``patch``'s output"""
    _needs_patch()
    return _patched_release()


#: pytorch-ood's own tests that a detector's pull request must keep green, and the patch's
REPOSITORY_TESTS = (
    "tests/test_info.py",
    "tests/detectors/test_all_detectors_smoke.py",
    "tests/detectors/test_signatures.py",
    "tests/detectors/test_fraction_hyperparameters.py",
    "tests/detectors/test_detector_taxonomy.py",
    "tests/test_hpo.py",
    "tests/detectors/test_line.py",
)
#: tests of the pinned repository files that fail on 0.4.0 with or without LINe: the taxonomy
#: test (older than 0.4.0) imports ``GradNormKL``, renamed ``GradUncertainty`` in 0.4.0 (aliased in
#: the temporary copy, by a conftest.py), and expects ReAct to need no fit, which 0.4.0's does
KNOWN_FAILURES = (
    "tests/detectors/test_detector_taxonomy.py::TestDetectorTaxonomy::"
    "test_feature_map_detectors_inherit_feature_maps_base",
)
_ALIAS = "import pytorch_ood.detector as d\n\nd.GradNormKL = d.GradUncertainty\n"


def run_repository_tests() -> subprocess.CompletedProcess:
    """
    Run :data:`REPOSITORY_TESTS` in a copy of the patched repository, as its README says: with
    ``PYTHONPATH=src:.``, so that ``src.pytorch_ood`` and ``pytorch_ood`` are the patched sources.

    :return: the finished pytest process, its output as text
    """
    tree = _tempdir() / "pytorch-ood"
    shutil.copytree(patched_tree()[0], tree)
    (tree / "tests" / "detectors" / "conftest.py").write_text(_ALIAS)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs"]
    cmd += [*REPOSITORY_TESTS, *(f"--deselect={test}" for test in KNOWN_FAILURES)]
    env = {**os.environ, "PYTHONPATH": "src:."}
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)


@functools.lru_cache(maxsize=None)
def _installed() -> Path:
    target = _tempdir()
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target"]
    cmd += [str(target), *make_patch().pip_build_flags(), str(patched_release()[0])]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pip install of the patched sdist failed:\n{run.stderr}")
    return target


def installed() -> Path:
    """:return: the folder where the patched 0.4.0 release is installed"""
    patched_release()  # skips here rather than inside the cached function
    return _installed()


def run_python(args: List[str], cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """
    Run ``python *args`` with the patched package first on the path, so that it, not the
    pytorch-ood installed in this environment, is ``pytorch_ood``.

    :return: the finished process, its output as text
    """
    env = {**os.environ, "PYTHONPATH": str(installed())}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd or _tempdir(), env=env, capture_output=True, text=True
    )
