"""
Builds ``upstream/pytorch_ood_line.patch``: LINe as a pull request to pytorch-ood's repository, a
unified diff applied with ``patch -p1`` at its root, at the commit pinned in ``upstream/BASE``.

The base tree is pytorch-ood's repository files that a detector's pull request touches
(``../shared/pytorch-ood-repo``, or ``$PYTORCH_OOD_REPO``: tests, docs, README) with ``src/`` from
the 0.4.0 source distribution (at the pinned commit, ``src/pytorch_ood/detector/__init__.py`` is
byte-identical to 0.4.0's). The patch adds the detector file, generated from
``line_plugin/core/line.py`` (only its import lines and its ``autoclass`` path differ, see
:func:`upstream_module`), its export, its tests (``upstream/files/``, ours), its documentation
page, and its entry in every registry pytorch-ood's CI checks (:data:`EDITS`). The ``src/`` part
also applies to the 0.4.0 release. The output is deterministic: fixed file order, no timestamps.

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
from typing import Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORE = REPO / "line_plugin" / "core" / "line.py"
FILES = HERE / "files"
PATCH = HERE / "pytorch_ood_line.patch"
#: the commit of pytorch-ood's repository the patch targets
BASE = (HERE / "BASE").read_text().split()[0]
#: pytorch-ood's repository files at BASE (read-only, not part of this project)
REPOSITORY = Path(os.environ.get("PYTORCH_OOD_REPO", REPO.parent / "shared" / "pytorch-ood-repo"))

VERSION = "0.4.0"
SDIST = f"pytorch_ood-{VERSION}.tar.gz"
#: sha256 of the sdist on PyPI: the patch is made against exactly this file
SDIST_SHA256 = "1f7cb44eb7d2ed6a9fd59352e34af25a5ce96e3605167882c33026d36c002a00"

DETECTOR = "src/pytorch_ood/detector/line.py"
EXPORTS = "src/pytorch_ood/detector/__init__.py"
DOCS_PAGE = "docs/detectors/line.rst"
#: files copied verbatim from upstream/files/ (same relative path in the patch)
COPIED = ("tests/detectors/test_line.py",)
#: the repository files the patch edits (each edit: after which line what is inserted), every
#: place the repository's README.md lists for a new detector
SMOKE = "tests/detectors/test_all_detectors_smoke.py"
DEVICES = "tests/detectors/test_device_handling.py"
FRACTIONS = "tests/detectors/test_fraction_hyperparameters.py"
TOCTREE = "docs/detector.rst"
DIAGRAM = "docs/core_api/detectors.rst"
README = "README.rst"

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
        raise ValueError(f"{path}: expected {anchor.strip()!r} once")
    return text.replace(anchor, anchor + new)


def upstream_exports(source: str) -> str:
    """
    :param source: text of pytorch-ood's ``detector/__init__.py``
    :return: the same with ``LINe`` imported and in ``__all__``, in sorted position
    """
    text = _insert_after(source, "from .knn import KNN\n", "from .line import LINe\n", EXPORTS)
    return _insert_after(text, '    "KNN",\n', '    "LINe",\n', EXPORTS)


_SMOKE_BUILDER = """\
            (
                "LINe",
                lambda: (
                    lambda model: LINe(
                        encoder=model.features,
                        w=model.classifier.weight,
                        b=model.classifier.bias,
                    )
                )(eval_model()),
            ),
"""
_DEVICE_BUILDER = """\
            (
                "LINe",
                lambda: (
                    lambda model: LINe(
                        encoder=model.features,
                        w=model.classifier.weight,
                        b=model.classifier.bias,
                    )
                )(ClassificationModel()),
            ),
"""
_FRACTION_BUILDERS = """\
    "LINe.p_a": lambda v: LINe(_identity, torch.zeros(3, 4), torch.zeros(3), p_a=v),
    "LINe.p_w": lambda v: LINe(_identity, torch.zeros(3, 4), torch.zeros(3), p_w=v),
"""
_REFERENCE = (
    ".. [#LINe] Ahn, Y. H., Park, G.-M., & Kim, S. T. (2023) LINe: Out-of-Distribution Detection "
    "by Leveraging Important Neurons. CVPR. `ArXiv <https://arxiv.org/abs/2303.13995>`__.\n\n"
)


def _before(text: str, anchor: str, new: str, path: str) -> str:
    if text.count(anchor) != 1:
        raise ValueError(f"{path}: expected {anchor.strip()!r} once")
    return text.replace(anchor, new + anchor)


def _smoke(text: str) -> str:
    # the import, and the builder after DICE's (before LTS's)
    text = _insert_after(text, "\n    KLMatching,\n", "    LINe,\n", SMOKE)
    return _before(text, '            (\n                "LTS",\n', _SMOKE_BUILDER, SMOKE)


def _devices(text: str) -> str:
    # the import, and the builder of the features registry after DICE's (before NNGuide's)
    text = _insert_after(text, "\n    KLMatching,\n", "    LINe,\n", DEVICES)
    return _before(text, '            (\n                "NNGuide",\n', _DEVICE_BUILDER, DEVICES)


def _readme(text: str) -> str:
    # a row of the detectors table after NAC-UE (2023), in its column widths, and the reference
    row = next(line for line in text.splitlines() if line.startswith("| NAC-UE "))
    widths = [len(cell) for cell in row.split("|")[1:-1]]
    cells = [
        " LINe",
        " Prunes the neurons and weights least important to the predicted class.",
        " 2023",
        " [#LINe]_",
    ]
    new = "|".join([""] + [c.ljust(w) for c, w in zip(cells, widths)] + [""]) + "\n"
    if len(new) != len(row) + 1:
        raise ValueError(f"{README}: the LINe row does not fit the table")
    separator = "+" + "+".join("-" * w for w in widths) + "+\n"
    text = _insert_after(text, row + "\n" + separator, new + separator, README)
    anchor = next(line for line in text.splitlines() if line.startswith(".. [#NACUE]"))
    return _insert_after(text, anchor + "\n\n", _REFERENCE, README)


#: path -> the edit of that repository file
EDITS: Dict[str, Callable[[str], str]] = {
    EXPORTS: upstream_exports,
    SMOKE: _smoke,
    DEVICES: _devices,
    FRACTIONS: lambda t: _insert_after(
        t.replace(
            "import ASH, DICE, LTS, SCALE, VRA, ReAct",
            "import ASH, DICE, LTS, SCALE, VRA, LINe, ReAct",
        ),
        '    "DICE.p": lambda v: DICE(_identity, torch.zeros(3, 4), torch.zeros(3), p=v),\n',
        _FRACTION_BUILDERS,
        FRACTIONS,
    ),
    TOCTREE: lambda t: _insert_after(t, "   detectors/dice\n", "   detectors/line\n", TOCTREE),
    DIAGRAM: lambda t: _insert_after(
        t, "pytorch_ood.detector.DICE ", "pytorch_ood.detector.LINe ", DIAGRAM
    ),
    README: _readme,
}


def docs_page() -> str:
    """:return: the detector's page, in the four-line form of ``docs/detectors/dice.rst``"""
    return "LINe\n====\n\n.. automodule:: pytorch_ood.detector.line\n"


def base_tree(sdist: Path, dest: Path) -> Path:
    """
    :param sdist: the pytorch-ood 0.4.0 sdist
    :param dest: an existing folder
    :return: the unpatched tree: the repository files at :data:`BASE` and the sdist's ``src/``
        with an empty ``src/__init__.py`` (the repository's tests import ``src.pytorch_ood``)
    :raises FileNotFoundError: if the repository files are not there
    """
    if not (REPOSITORY / "tests" / "detectors").is_dir():
        raise FileNotFoundError(f"pytorch-ood's repository files are not in {REPOSITORY}")
    tree = Path(dest) / "pytorch-ood"
    shutil.copytree(REPOSITORY, tree)
    for path in tree.rglob("*"):  # the shared copy is read-only
        path.chmod(path.stat().st_mode | 0o200)
    release = extract_sdist(sdist, Path(dest))
    shutil.copytree(release / "src" / "pytorch_ood", tree / "src" / "pytorch_ood")
    (tree / "src" / "__init__.py").write_text("")
    return tree


def patched_files(tree: Path, core: Path = CORE) -> Dict[str, Tuple[Optional[str], str]]:
    """
    :param tree: root of the unpatched tree (:func:`base_tree`)
    :param core: the core module
    :return: for each path the patch touches, its text before (``None``: a new file) and after
    """
    files = {DETECTOR: (None, upstream_module(core.read_text())), DOCS_PAGE: (None, docs_page())}
    for path, edit in EDITS.items():
        old = (tree / path).read_text()
        files[path] = (old, edit(old))
    for path in COPIED:
        files[path] = (None, (FILES / path).read_text())
    for path, (old, _) in files.items():
        if old is None and (tree / path).exists():
            raise ValueError(f"{path} already exists in the repository")
    return files


def make_patch(tree: Path, core: Path = CORE) -> str:
    """
    :param tree: root of the unpatched tree (:func:`base_tree`)
    :param core: the core module
    :return: the text of the patch
    """
    out = [
        f"LINe (CVPR 2023) for pytorch-ood at {BASE} (release {VERSION}): apply with\n",
        "`patch -p1` at the repository's root. Generated by upstream/make_patch.py from\n",
        "line_plugin/core/line.py; do not edit.\n",
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


def file_sections(text: str) -> Dict[str, str]:
    """:return: the patch split into its files: path -> that file's part of the diff"""
    parts = re.split(r"(?m)^(?=--- )", text)
    return {re.search(r"(?m)^\+\+\+ b/(\S+)$", p)[1]: p for p in parts if p.startswith("--- ")}


def apply_patch(tree: Path, patch: Path = PATCH, prefix: str = "", fuzz: int = 0) -> str:
    """
    Apply the patch (only its files under ``prefix``) at ``tree`` with ``patch -p1``.

    :param fuzz: the fuzz ``patch`` may use; with 0, offsets are refused too
    :return: the output of ``patch``
    :raises RuntimeError: if it does not apply (cleanly, with ``fuzz=0``)
    """
    if shutil.which("patch") is None:
        raise FileNotFoundError("the 'patch' program is not installed")
    sections = file_sections(Path(patch).read_text())
    text = "".join(part for path, part in sections.items() if path.startswith(prefix))
    run = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", f"--fuzz={fuzz}"],
        input=text,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    unclean = fuzz == 0 and re.search(r"offset|fuzz|reject", run.stdout, re.I)
    if run.returncode != 0 or unclean:
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
        text = make_patch(base_tree(sdist, Path(tmp)), args.core)
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
