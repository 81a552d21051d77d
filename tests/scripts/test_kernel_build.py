"""
The fused kernel built for CUDA architectures on the CPU (``benchmarks/kernel_build.py``):
every tile the autotuner chooses among compiles for the GPUs people score on, and fits in
registers there. The interpreter tests (test_fused.py) check what the kernel computes; these check
what the interpreter cannot: that Triton's compiler accepts it and that no tile spills.
"""

import inspect

import pytest

from line_plugin.plugin import fused

pytest.importorskip("triton")
from benchmarks import kernel_build  # noqa: E402  (the repository root is on the path)


def _built(tile, arch):
    try:
        return kernel_build.build(tile, arch)
    except RuntimeError as e:
        if "cuobjdump" in str(e):
            pytest.skip(f"this Triton cannot read cubins: {e}")
        raise


def test_the_signature_is_read_from_the_kernel():
    types, constants = kernel_build.signature((16, 32, 8, 4))
    assert list(types) == list(inspect.signature(kernel_build.KERNEL).parameters)
    assert constants == {"BLOCK_B": 16, "BLOCK_K": 32, "BLOCK_D": 8}
    assert {types[name] for name in constants} == {"constexpr"}
    assert types["pred_ptr"] == "*i64" and types["h_ptr"] == types["z_ptr"] == "*fp32"
    assert types["B"] == types["stride_zk"] == "i32"


@pytest.mark.slow  # a Triton build takes about a second
@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("tile", fused.CONFIGS)
def test_every_tile_compiles_without_spills(tile, arch):
    built = _built(tile, arch)
    assert built.arch == arch and built.tile == tuple(tile)
    assert built.spilled == 0
    assert 0 < built.registers <= 255
    # the only shared memory is the final reduction's scratch and Triton's own: a few kB
    assert 0 < built.shared <= 48 * 1024


@pytest.mark.slow
def test_a_tile_too_large_for_the_registers_is_reported_as_spilling():
    # 128 x 128 x 8 partial sums on 4 warps: 1,024 floats per thread, far over 255 registers
    built = _built((128, 128, 8, 4), 90)
    assert built.spilled > 0


@pytest.mark.slow
def test_the_build_is_what_the_gpu_would_launch():
    assert kernel_build.build_all(90, [fused.DEFAULT_CONFIG])[0].tile == fused.DEFAULT_CONFIG
    assert kernel_build.build_all(90)[-1].tile == fused.CONFIGS[-1]
    row = kernel_build.build(fused.DEFAULT_CONFIG, 90).as_dict()
    assert row["triton"] == fused.triton.__version__ and row["spilled"] == 0


@pytest.mark.parametrize(
    "tile, arch, message",
    [
        ((16, 32, 8), 90, "rows, classes, features, warps"),
        ((16, 32, 8, 3), 90, "powers of two"),
        ((16, 0, 8, 4), 90, "positive integers"),
        ((16, 32.0, 8, 4), 90, "positive integers"),
        ((16, 32, 8, 4), 9, "compute capability"),
        ((16, 32, 8, 4), True, "compute capability"),
    ],
)
def test_bad_requests_are_named(tile, arch, message):
    with pytest.raises(ValueError, match=message):
        kernel_build.build(tile, arch)
