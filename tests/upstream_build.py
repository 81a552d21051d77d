"""
The pytorch-ood 0.4.0 sdist, unpatched and patched with ``upstream/pytorch_ood_line.patch``, and
the patched package installed without dependencies into a temporary folder: each made once per
test session. The sdist comes through pip (cached by ``upstream/make_patch.py``); where pip
cannot reach it, or the ``patch`` program is missing, the tests that need it are skipped.
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
    """:return: the unpatched sdist, extracted (do not modify)"""
    return make_patch().extract_sdist(sdist(), _tempdir())


@functools.lru_cache(maxsize=None)
def _patched_tree() -> Tuple[Path, str]:
    tree = make_patch().extract_sdist(sdist(), _tempdir())
    return tree, make_patch().apply_patch(tree)


def patched_tree() -> Tuple[Path, str]:
    """
    :return: the sdist with the committed patch applied, and the output of ``patch``
    :raises RuntimeError: if the patch does not apply cleanly
    """
    if shutil.which("patch") is None:
        pytest.skip("the 'patch' program is not installed")
    return _patched_tree()


@functools.lru_cache(maxsize=None)
def _installed() -> Path:
    target = _tempdir()
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target"]
    cmd += [str(target), *make_patch().pip_build_flags(), str(patched_tree()[0])]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pip install of the patched sdist failed:\n{run.stderr}")
    return target


def installed() -> Path:
    """:return: the folder where the patched pytorch_ood is installed"""
    patched_tree()  # skips here rather than inside the cached function
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
