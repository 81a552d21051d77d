"""
Builds of the fused GPU scoring kernel (:mod:`line_plugin.plugin.fused`) for CUDA architectures,
without a GPU: Triton compiles a kernel to a cubin on any machine. For every tile the autotuner
chooses among, whether the installed Triton compiles it, and what the cubin needs there, read by
``cuobjdump`` (which Triton's NVIDIA backend ships): registers per thread, bytes spilled to local
memory, shared memory. A build says nothing of speed; it shows that the GPU path compiles for a
target with a Triton release, before any GPU time is spent on it.

Writes ``benchmarks/results/kernel_build.json`` (one entry per Triton release: a run with another
release adds its entry and keeps the others) and ``kernel_build.md``. Usage::

    python benchmarks/kernel_build.py                       # sm_80, sm_90, sm_100
    python benchmarks/kernel_build.py --arch 90
    # another Triton release, installed apart (torch stays the one of the environment):
    pip install --no-deps --target /tmp/triton36 triton==3.6.0
    PYTHONPATH=/tmp/triton36 python benchmarks/kernel_build.py
"""

import argparse
import inspect
import json
import os
import platform
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from line_plugin.plugin import fused

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {80: "A100", 90: "H100, H200", 100: "B200"}


#: the kernel as fused.py defines it (a plain function, which fused.py jits per mode; ``None``
#: without Triton)
KERNEL = getattr(fused, "masked_logits_kernel", None)
#: the dtype of each pointer argument, by the tensor it points to (``masked_logits``'s contract:
#: ``pred`` holds int64 classes, everything else is ``fused.SUPPORTED_DTYPE``)
POINTER_DTYPES = {"pred": torch.int64}
TRITON_TYPES = {torch.float32: "*fp32", torch.int64: "*i64"}
_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


@dataclass(frozen=True)
class KernelBuild:
    """what one tile of the kernel needs on one architecture"""

    #: compute capability times ten (80: A100, 90: H100 and H200, 100: B200)
    arch: int
    #: rows of the batch, classes and features per program, and warps
    tile: Tuple[int, int, int, int]
    #: registers per thread
    registers: int
    #: bytes per thread spilled to local memory or the stack (0: none)
    spilled: int
    #: shared memory per program in bytes (static and dynamic)
    shared: int
    #: the Triton release that built it
    triton: str

    def as_dict(self) -> Dict:
        """:return: the fields as a JSON-ready dictionary"""
        return asdict(self)


def signature(tile: Tuple[int, int, int, int]) -> Tuple[Dict[str, str], Dict[str, int]]:
    """
    The kernel's signature in Triton's notation, read from its parameters: ``*_ptr`` arguments
    are pointers (dtypes: :data:`POINTER_DTYPES`), ``tl.constexpr`` ones are the tile, the others
    32-bit integers (sizes and strides).

    :param tile: rows of the batch, classes, features per program and warps
    :return: the signature and the constants (the tile's block sizes)
    """
    rows, cols, feats, _ = tile
    constants = {"BLOCK_B": rows, "BLOCK_K": cols, "BLOCK_D": feats}
    out = {}
    for name, param in inspect.signature(KERNEL).parameters.items():
        if name in constants:
            out[name] = "constexpr"
        elif name.endswith("_ptr"):
            dtype = POINTER_DTYPES.get(name[: -len("_ptr")], fused.SUPPORTED_DTYPE)
            out[name] = TRITON_TYPES[dtype]
        else:
            out[name] = "i32"
    missing = set(constants) - set(out)
    if missing:
        raise RuntimeError(f"the kernel has no block size parameters {sorted(missing)}")
    return out, constants


def build(tile: Tuple[int, int, int, int], arch: int = 90) -> KernelBuild:
    """
    Compiles the kernel with one tile for one CUDA architecture, without a GPU.

    :param tile: rows of the batch, classes, features per program (powers of two) and warps
    :param arch: compute capability times ten, e.g. 90 for an H200
    :return: the registers, spills and shared memory of the cubin
    :raises ValueError: on a malformed tile or architecture, or without Triton
    :raises RuntimeError: if Triton cannot compile the kernel, or ``cuobjdump`` is missing
    """
    if fused.triton is None:
        raise ValueError("building the fused kernel needs Triton, which does not import here")
    _check_tile(tile)
    if isinstance(arch, bool) or not isinstance(arch, int) or arch < 50:
        raise ValueError(f"arch must be a compute capability times ten (e.g. 90), got {arch!r}")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    types, constants = signature(tile)
    # a JITFunction directly: triton.jit gives an interpreted function under TRITON_INTERPRET=1
    source = ASTSource(JITFunction(KERNEL), types, constants)
    try:
        kernel = fused.triton.compile(
            source, target=GPUTarget("cuda", arch, 32), options={"num_warps": tile[3]}
        )
    except Exception as e:
        raise RuntimeError(f"Triton cannot build the kernel {tile} for sm_{arch}: {e}") from e
    registers, stack, static, local = _usage(kernel.asm["cubin"])
    return KernelBuild(
        arch=arch,
        tile=tuple(tile),
        registers=registers,
        spilled=stack + local,
        shared=static + int(kernel.metadata.shared),
        triton=fused.triton.__version__,
    )


def build_all(
    arch: int = 90, tiles: Optional[List[Tuple[int, int, int, int]]] = None
) -> List[KernelBuild]:
    """
    :param arch: compute capability times ten
    :param tiles: tiles to build; default: every tile the autotuner chooses among
    :return: a :class:`KernelBuild` per tile
    """
    return [build(tile, arch) for tile in (fused.CONFIGS if tiles is None else tiles)]


def _check_tile(tile) -> None:
    if not isinstance(tile, (tuple, list)) or len(tile) != 4:
        raise ValueError(f"tile must be (rows, classes, features, warps), got {tile!r}")
    for value in tile:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"tile must hold positive integers, got {tile!r}")
        if value & (value - 1):
            raise ValueError(f"tile sizes and warps must be powers of two, got {tile!r}")


def _cuobjdump() -> str:
    backend = os.path.join(os.path.dirname(fused.triton.__file__), "backends", "nvidia")
    path = os.path.join(backend, "bin", "cuobjdump")
    if not os.path.isfile(path):
        raise RuntimeError(f"Triton's NVIDIA backend has no cuobjdump at {path}")
    return path


def _usage(cubin: bytes) -> Tuple[int, int, int, int]:
    """registers, stack, static shared and local bytes of the one kernel in ``cubin``"""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        done = subprocess.run(
            [_cuobjdump(), "-res-usage", path], capture_output=True, text=True, check=False
        )
    found = _USAGE.search(done.stdout)
    if done.returncode or found is None:
        raise RuntimeError(f"cuobjdump cannot read the cubin: {done.stderr or done.stdout}")
    registers, stack, shared, local = (int(v) for v in found.groups())
    return registers, stack, shared, local


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, nargs="+", default=[80, 90, 100], help="e.g. 90 = sm_90")
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    return p.parse_args(argv)


def run(archs: List[int]) -> Dict:
    """:return: one row per (architecture, tile): the build, or why it failed"""
    rows = []
    for arch in archs:
        for tile in fused.CONFIGS:
            try:
                rows.append(build(tile, arch).as_dict())
            except RuntimeError as e:
                rows.append({"arch": arch, "tile": list(tile), "error": str(e).splitlines()[0]})
    return {"triton": fused.triton.__version__, "python": platform.python_version(), "rows": rows}


def markdown(runs: Dict[str, Dict]) -> str:
    lines = [
        "# The fused scoring kernel built for CUDA architectures, without a GPU",
        "",
        "`python benchmarks/kernel_build.py`: every tile of "
        "the autotuner compiled to a cubin by Triton for each architecture, its resources read "
        "by `cuobjdump -res-usage`. Tile: rows of the batch x classes x features per program, "
        "warps. Cells: registers per thread / bytes spilled / shared memory in bytes. These are "
        "builds, not runs: they show the GPU path compiles, not how fast it is.",
    ]
    for version in sorted(runs, key=lambda v: tuple(int(x) for x in v.split(".")[:3])):
        rows = runs[version]["rows"]
        archs = sorted({row["arch"] for row in rows})
        tiles = [tuple(t) for t in dict.fromkeys(tuple(row["tile"]) for row in rows)]
        cells = {(row["arch"], tuple(row["tile"])): row for row in rows}
        header = [f"sm_{a} ({NAMES[a]})" if a in NAMES else f"sm_{a}" for a in archs]
        lines += ["", f"## Triton {version}", "", "| tile | " + " | ".join(header) + " |"]
        lines.append("| --- " * (len(archs) + 1) + "|")
        for tile in tiles:
            out = []
            for arch in archs:
                row = cells[(arch, tile)]
                if "error" in row:
                    out.append("fails")
                else:
                    out.append(f"{row['registers']} / {row['spilled']} / {row['shared']}")
            lines.append(f"| {' x '.join(map(str, tile))} | " + " | ".join(out) + " |")
        failures: Dict[int, set] = {}
        for row in rows:
            if "error" in row:  # the reason without the tile it names
                failures.setdefault(row["arch"], set()).add(row["error"].split(": ", 1)[-1])
        for arch, reasons in sorted(failures.items()):
            lines += ["", f"sm_{arch} fails to build: {'; '.join(sorted(reasons))}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if fused.triton is None:
        raise SystemExit("kernel_build.py needs Triton, which does not import here")
    result = run(args.arch)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "kernel_build.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[result["triton"]] = result
    path.write_text(json.dumps(runs, indent=1) + "\n")
    text = markdown(runs)
    (args.out / "kernel_build.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
