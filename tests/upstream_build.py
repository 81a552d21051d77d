"""
pytorch-ood's repository files at the pinned commit (``upstream/BASE``, with the 0.4.0 sources in
``src/``) and the 0.4.0 release, unpatched and patched with ``upstream/pytorch_ood_line.patch``,
the patched release installed without dependencies into a temporary folder, pytorch-ood's own
tests run in the patched repository, and its module's documentation built: each made once per
test session. The sdist comes through pip (cached by ``upstream/make_patch.py``); where pip cannot
reach it, or the ``patch`` program is missing, the tests that need it are skipped.
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


def run_repository_tests() -> subprocess.CompletedProcess:
    """
    Run pytorch-ood's whole copied test suite (``python -m pytest -q tests``, ``test_line.py``
    included) in a copy of the patched repository, as its README says: with ``PYTHONPATH=src:.``,
    so that ``src.pytorch_ood`` and ``pytorch_ood`` are the patched sources.

    :return: the finished pytest process, its output as text
    """
    tree = _tempdir() / "pytorch-ood"
    shutil.copytree(patched_tree()[0], tree)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", "tests"]
    env = {**os.environ, "PYTHONPATH": "src:."}
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)


#: the extension and settings of pytorch-ood's docs/conf.py that document a detector's module
#: (nitpicky: every cross-reference must resolve); references to torch, numpy, typing and the
#: builtins resolve there through intersphinx, which needs the network: ignored here
SPHINX_CONF = """\
project = "LINe"
extensions = ["sphinx.ext.autodoc"]
autoclass_content = "both"
autodoc_typehints_format = "short"
nitpicky = True
nitpick_ignore_regex = [
    ("py:.*", r"(torch|numpy|typing|typing_extensions)(\\..*)?"),
    ("py:.*", r"float|int|bool|str|dict|list|tuple|ValueError"),
]
"""
#: what pytorch-ood's documentation documents and the module's docstrings (with the inherited
#: members') link to, declared so that the links resolve as they do there
SPHINX_TARGETS = """\
Targets
=======

.. py:module:: pytorch_ood.detector

.. py:class:: pytorch_ood.detector.EnergyBased

.. py:class:: pytorch_ood.api.FeaturesDetector

.. py:class:: pytorch_ood.api.DetectorInfo

.. py:exception:: pytorch_ood.api.RequiresFittingException

.. py:exception:: pytorch_ood.api.ModelNotSetException

.. py:class:: pytorch_ood.utils.GridSearch
"""


def build_docs() -> subprocess.CompletedProcess:
    """
    ``sphinx-build -W --keep-going`` of a minimal Sphinx project: the patch's page
    ``docs/detectors/line.rst`` (autodoc of ``pytorch_ood.detector.line``) with the autodoc
    settings of pytorch-ood's ``docs/conf.py``, the patched sources first on the path.

    :return: the finished process, its output as text
    """
    root = _tempdir()
    (root / "detectors").mkdir()
    (root / "core_api").mkdir()
    (root / "conf.py").write_text(SPHINX_CONF)
    pages = ["detectors/line", "core_api/metadata", "targets"]
    toctree = "".join(f"   {page}\n" for page in pages)
    (root / "index.rst").write_text(f"Index\n=====\n\n.. toctree::\n\n{toctree}")
    (root / "core_api" / "metadata.rst").write_text("Metadata\n========\n")
    (root / "targets.rst").write_text(SPHINX_TARGETS)
    tree = patched_tree()[0]
    shutil.copy(tree / "docs" / "detectors" / "line.rst", root / "detectors" / "line.rst")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += [str(root), str(root / "_build")]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


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
