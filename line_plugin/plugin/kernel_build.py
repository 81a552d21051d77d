"""
Ahead-of-time builds of the fused scoring kernel (:mod:`line_plugin.plugin.fused`) for a CUDA
architecture, on any machine: Triton compiles a kernel to a cubin without a GPU. This checks that
every tile of the autotuner compiles for a target with the installed Triton, and reads what each
needs there from the cubin: registers per thread, bytes spilled to local memory, shared memory.
``cuobjdump``, which Triton's NVIDIA backend ships, reads the cubin.

No GPU runs anything here: a build says nothing of the kernel's speed, only that the GPU path will
compile and what it needs.
"""

import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from . import fused

#: argument types of the kernel in Triton's signature notation, in the kernel's order
_POINTERS = {
    "h_ptr": "*fp32",
    "pred_ptr": "*i64",
    "w_ptr": "*fp32",
    "t_ptr": "*fp32",
    "b_ptr": "*fp32",
    "z_ptr": "*fp32",
}
_INTEGERS = (
    *("B", "K", "D", "batch_bucket"),
    *("stride_hb", "stride_hd", "stride_wk", "stride_wd", "stride_tk", "stride_td"),
    *("stride_bb", "stride_bk", "stride_zb", "stride_zk"),
)
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

    rows, cols, feats, warps = tile
    constants = {"BLOCK_B": rows, "BLOCK_K": cols, "BLOCK_D": feats}
    signature = {**_POINTERS, **{name: "i32" for name in _INTEGERS}}
    signature.update({name: "constexpr" for name in constants})
    # a JITFunction directly: triton.jit gives an interpreted function under TRITON_INTERPRET=1
    source = ASTSource(JITFunction(fused._masked_logits_kernel), signature, constants)
    try:
        kernel = fused.triton.compile(
            source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps}
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
