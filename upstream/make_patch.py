"""
Builds ``upstream/pytorch_ood_line.patch``: LINe as a pull request to pytorch-ood, a unified
diff against the pytorch-ood 0.4.0 source distribution, applied with ``patch -p1`` at its root.

The detector file of the patch is generated from ``line_plugin/core/line.py``; only its import
lines and its ``autoclass`` path differ (see :func:`upstream_module`). The patch's test file
and documentation page are copied from ``upstream/files/``. The output is deterministic: fixed
file order, no timestamps.

.. code-block:: bash

    python upstream/make_patch.py            # rewrite the patch
    python upstream/make_patch.py --check    # exit 1 if the committed patch is not current

The sdist is fetched with ``pip download`` once and cached in ``$LINE_OOD_CACHE/upstream``,
else ``$XDG_CACHE_HOME/line_plugin/upstream``, else ``~/.cache/line_plugin/upstream``.
"""

import argparse
import ast
import difflib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORE = REPO / "line_plugin" / "core" / "line.py"
FILES = HERE / "files"
PATCH = HERE / "pytorch_ood_line.patch"

VERSION = "0.4.0"
SDIST = f"pytorch_ood-{VERSION}.tar.gz"
#: sha256 of the sdist on PyPI: the patch is made against exactly this file
SDIST_SHA256 = "1f7cb44eb7d2ed6a9fd59352e34af25a5ce96e3605167882c33026d36c002a00"

DETECTOR = "src/pytorch_ood/detector/line.py"
EXPORTS = "src/pytorch_ood/detector/__init__.py"
#: files copied verbatim from upstream/files/ (same relative path in the patch)
COPIED = ("docs/detectors/line.rst", "tests/detectors/test_line.py")

AUTOCLASS = ("..  autoclass:: line_plugin.core.LINe", "..  autoclass:: pytorch_ood.detector.LINe")
#: absolute imports of the core -> the relative imports of pytorch-ood's detectors
IMPORTS = (
    (re.compile(r"^from pytorch_ood\.api import "), "from ..api import "),
    (re.compile(r"^from pytorch_ood\.utils((?:\.\w+)*) import "), r"from ..utils\1 import "),
    (re.compile(r"^from pytorch_ood\.detector\.energy import "), "from .energy import "),
)


class SdistUnavailable(RuntimeError):
    """pip could not fetch the pytorch-ood sdist"""


# -- the sdist ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """:return: the folder where the sdist is cached: ``upstream/`` in the project's cache"""
    if os.environ.get("LINE_OOD_CACHE"):
        return Path(os.environ["LINE_OOD_CACHE"]) / "upstream"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "line_plugin" / "upstream"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pip_build_flags() -> List[str]:
    """:return: ``--no-build-isolation`` where pip can build the sdist with this setuptools"""
    try:
        import setuptools
    except ImportError:
        return []
    return ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 61 else []


def fetch_sdist(cache: Optional[Path] = None) -> Path:
    """
    Download the pytorch-ood sdist with pip, once.

    :param cache: folder of the cached sdist (default :func:`cache_dir`)
    :return: path of the sdist
    :raises SdistUnavailable: if pip cannot fetch it
    :raises ValueError: if the file's checksum is not the expected one
    """
    cache = Path(cache) if cache is not None else cache_dir()
    path = cache / SDIST
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", f"pytorch-ood=={VERSION}"]
            cmd += ["--no-binary", ":all:", "--no-deps", "--quiet", "-d", tmp]
            cmd += ["--retries", "1", "--timeout", "30", *pip_build_flags()]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0 or not (Path(tmp) / SDIST).exists():
                raise SdistUnavailable(
                    f"pip download pytorch-ood=={VERSION} failed: {run.stderr.strip()[-1000:]}"
                )
            os.replace(Path(tmp) / SDIST, path)  # atomic: no half-written sdist in the cache
    if _sha256(path) != SDIST_SHA256:
        raise ValueError(f"{path} is not the PyPI sdist of pytorch-ood {VERSION} (sha256)")
    return path


def extract_sdist(sdist: Path, dest: Path) -> Path:
    """
    :param sdist: the pytorch-ood sdist
    :param dest: an existing folder
    :return: the root of the extracted tree, ``dest/pytorch_ood-0.4.0``
    """
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover (Python < 3.11.4)
            tar.extractall(dest)
    return Path(dest) / f"pytorch_ood-{VERSION}"


# -- the patched files -------------------------------------------------------------------------


def _statement_lines(node: ast.stmt) -> range:
    return range(node.lineno - 1, node.end_lineno)


def upstream_module(source: str) -> str:
    """
    The core module as pytorch-ood's detector file: its absolute ``pytorch_ood`` imports become
    the relative imports of pytorch-ood's detectors, gathered as the last block of the module's
    imports (where isort puts relative imports), and its ``autoclass`` path becomes
    ``pytorch_ood.detector.LINe``. Every other line stays as it is, in the same order.

    :param source: text of ``line_plugin/core/line.py``
    :return: text of ``src/pytorch_ood/detector/line.py``
    :raises ValueError: if the core has a line the rewrite does not cover (another import of
        ``pytorch_ood`` or ``line_plugin``, a relative import, a missing ``autoclass`` line)
    """
    if not source.endswith("\n"):
        raise ValueError("the core module must end with a newline")
    lines = source.splitlines(keepends=True)
    if [line.rstrip() for line in lines].count(AUTOCLASS[0]) != 1:
        raise ValueError(f"the core module must hold the line {AUTOCLASS[0]!r} exactly once")
    tree = ast.parse(source)
    moved: List[Tuple[int, str, List[str]]] = []  # (level, module, lines) of relative imports
    drop = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] in ("pytorch_ood", "line_plugin") for a in node.names
        ):
            raise ValueError(f"line {node.lineno}: use 'from pytorch_ood.<module> import ...'")
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            raise ValueError(f"line {node.lineno}: the core module must use absolute imports")
        if node.module.split(".")[0] not in ("pytorch_ood", "line_plugin"):
            continue
        span = _statement_lines(node)
        first = lines[span.start]
        for pattern, relative in IMPORTS:
            if pattern.match(first):
                new = pattern.sub(relative, first, count=1)
                break
        else:
            raise ValueError(f"line {node.lineno}: no relative form for {first.strip()!r}")
        if node.col_offset or node not in tree.body:
            lines[span.start] = new  # a local import: rewritten in place
            continue
        module = re.match(r"from (\.+)(\S*)", new)
        moved.append((-len(module[1]), module[2], [new] + lines[span.start + 1 : span.stop]))
        drop.update(span)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    start, end = (imports[0].lineno - 1, imports[-1].end_lineno) if imports else (0, 0)
    block = [line for i, line in enumerate(lines[start:end], start) if i not in drop]
    if moved:
        block += ["\n"] + [line for _, _, lines_ in sorted(moved) for line in lines_]
    # a section emptied by the move leaves two blank lines
    block = re.sub(r"\n\n\n+", "\n\n", "\n" + "".join(block))[1:]
    text = "".join(lines[:start]) + block + "".join(lines[end:])
    text = text.replace(AUTOCLASS[0], AUTOCLASS[1], 1)
    if "line_plugin" in text:
        raise ValueError("the core module names line_plugin outside its autoclass line")
    return text


def _insert_after(text: str, anchor: str, new: str, path: str) -> str:
    if text.count(anchor) != 1:
        raise ValueError(f"{path}: expected the line {anchor.strip()!r} once")
    return text.replace(anchor, anchor + new)


def upstream_exports(source: str) -> str:
    """
    :param source: text of pytorch-ood's ``detector/__init__.py``
    :return: the same with ``LINe`` imported and in ``__all__``, in sorted position
    """
    text = _insert_after(source, "from .knn import KNN\n", "from .line import LINe\n", EXPORTS)
    return _insert_after(text, '    "KNN",\n', '    "LINe",\n', EXPORTS)


def patched_files(tree: Path, core: Path = CORE) -> Dict[str, Tuple[Optional[str], str]]:
    """
    :param tree: root of the unpatched sdist
    :param core: the core module
    :return: for each path the patch touches, its text before (``None``: a new file) and after
    """
    files = {
        DETECTOR: (None, upstream_module(core.read_text())),
        EXPORTS: ((tree / EXPORTS).read_text(), upstream_exports((tree / EXPORTS).read_text())),
    }
    for path in COPIED:
        files[path] = (None, (FILES / path).read_text())
    for path, (old, _) in files.items():
        if old is None and (tree / path).exists():
            raise ValueError(f"{path} already exists in the sdist")
    return files


def make_patch(tree: Path, core: Path = CORE) -> str:
    """
    :param tree: root of the unpatched sdist
    :param core: the core module
    :return: the text of the patch
    """
    out = [
        f"LINe (CVPR 2023) for pytorch-ood {VERSION}: apply with `patch -p1` at its root.\n",
        "Generated by upstream/make_patch.py from line_plugin/core/line.py; do not edit.\n",
        "\n",
    ]
    for path, (old, new) in sorted(patched_files(tree, core).items()):
        a = [] if old is None else old.splitlines(keepends=True)
        b = new.splitlines(keepends=True)
        if not new.endswith("\n") or (old and not old.endswith("\n")):
            raise ValueError(f"{path} must end with a newline")
        fromfile = "/dev/null" if old is None else f"a/{path}"
        out += difflib.unified_diff(a, b, fromfile=fromfile, tofile=f"b/{path}")
    return "".join(out)


def apply_patch(tree: Path, patch: Path = PATCH) -> str:
    """
    Apply the patch at ``tree`` with ``patch -p1``, refusing fuzz.

    :return: the output of ``patch``
    :raises RuntimeError: if it does not apply cleanly (a failed hunk, an offset, fuzz)
    """
    if shutil.which("patch") is None:
        raise FileNotFoundError("the 'patch' program is not installed")
    run = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--fuzz=0", "-i", str(patch)],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0 or re.search(r"offset|fuzz|reject", run.stdout, re.I):
        raise RuntimeError(f"the patch does not apply cleanly:\n{run.stdout}{run.stderr}")
    return run.stdout


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the patch is not current")
    parser.add_argument("--sdist", type=Path, help="the pytorch-ood 0.4.0 sdist (default: pip)")
    parser.add_argument("--core", type=Path, default=CORE, help="the core module")
    parser.add_argument("--output", type=Path, default=PATCH, help="where to write the patch")
    args = parser.parse_args(argv)
    sdist = args.sdist or fetch_sdist()
    with tempfile.TemporaryDirectory() as tmp:
        text = make_patch(extract_sdist(sdist, Path(tmp)), args.core)
    if args.check:
        if not args.output.exists() or args.output.read_bytes() != text.encode():
            print(f"{args.output} is not current: run python upstream/make_patch.py")
            return 1
        print(f"{args.output} is current")
        return 0
    args.output.write_bytes(text.encode())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
