"""
Fused scoring of LINe's pruned logits: one Triton kernel for

.. math::

    z_{bk} = \\sum_j h_{bj} W_{kj} [W_{kj} > T_{l_b j}] + b_k

where :math:`l_b` is the class predicted for row :math:`b`. Each program computes a
:math:`B \\times K` tile of :math:`z`, walking over :math:`D` in chunks: it gathers the threshold
rows :math:`T_{l_b}` of its rows, compares them with the weights and accumulates the kept
products in registers. No masked matrix is ever built, neither :math:`K \\times D` per class (the
per-class loop of the core detector) nor :math:`B \\times K \\times D` (DICE); the extra memory is
the output alone.

The plugin detector calls it for float32 features on a CUDA device; everything else keeps the
core's exact per-class loop (float64 features included, which stay exact). With
``TRITON_INTERPRET=1`` the same kernel also runs on the CPU, through Triton's interpreter (slow;
for tests). The kernel computes the same masks as the loop (the same comparisons in the same
dtype); only the order of the float32 sums differs.

This module imports without Triton: :func:`applies` is then ``False``.
"""

import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)

try:
    import triton
    import triton.language as tl
except Exception:  # not installed, or an install that fails to import: no fused path
    triton = None

#: the dtype the kernel computes in; float64 features keep the exact per-class loop
SUPPORTED_DTYPE = torch.float32
#: tile sizes (rows of the batch, classes, features) and warps the autotuner chooses among on a
#: GPU; every one of them is also run by the interpreter tests
CONFIGS: List[Tuple[int, int, int, int]] = [
    (16, 32, 8, 4),
    (32, 32, 8, 4),
    (32, 64, 4, 4),
    (64, 32, 4, 4),
    (64, 64, 4, 8),
    (16, 64, 16, 8),
]
#: the tile of the interpreter (and of the probe launch on a new device)
DEFAULT_CONFIG = (16, 32, 8, 4)


if triton is not None:
    # The kernel calls only builtins of triton.language (tl.full, tl.reduce: not tl.zeros,
    # tl.sum, which are @triton.jit functions of its standard library): Triton's interpreter then
    # runs it even where triton was imported before TRITON_INTERPRET=1 was set, as in the tests.

    # public: benchmarks/kernel_build.py compiles it for CUDA architectures without a GPU
    def masked_logits_kernel(
        h_ptr,
        pred_ptr,
        w_ptr,
        t_ptr,
        b_ptr,
        z_ptr,
        B,
        K,
        D,
        batch_bucket,  # only a key of the autotuner: the batch size rounded up to a power of two
        stride_hb,
        stride_hd,
        stride_wk,
        stride_wd,
        stride_tk,
        stride_td,
        stride_bb,
        stride_bk,
        stride_zb,
        stride_zk,
        BLOCK_B: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        row_ok = rows < B
        col_ok = cols < K
        rows = rows.to(tl.int64)
        cols = cols.to(tl.int64)
        # the threshold row of each row's predicted class, gathered per row of the tile
        labels = tl.load(pred_ptr + rows, mask=row_ok, other=0).to(tl.int64)
        h_rows = h_ptr + rows[:, None] * stride_hb
        t_rows = t_ptr + labels[:, None] * stride_tk
        w_rows = w_ptr + cols[:, None] * stride_wk
        offsets = tl.arange(0, BLOCK_D)
        # partial sums per feature lane, reduced once at the end: the loop body is elementwise
        acc = tl.full((BLOCK_B, BLOCK_K, BLOCK_D), 0.0, tl.float32)
        for start in range(0, D, BLOCK_D):
            d = start + offsets
            d_ok = d < D
            d = d.to(tl.int64)
            h = tl.load(
                h_rows + d[None, :] * stride_hd, row_ok[:, None] & d_ok[None, :], other=0.0
            )
            t = tl.load(
                t_rows + d[None, :] * stride_td, row_ok[:, None] & d_ok[None, :], other=0.0
            )
            w = tl.load(
                w_rows + d[None, :] * stride_wd, col_ok[:, None] & d_ok[None, :], other=0.0
            )
            # W[k, j] is kept for row b if W[k, j] > T[l_b, j] (padding: w = 0 and h = 0)
            kept = tl.where(w[None, :, :] > t[:, None, :], w[None, :, :], 0.0)
            acc += h[:, None, :] * kept
        z = tl.reduce(acc, 2, tl.standard._sum_combine)  # tl.sum, as its body reads
        out_ok = row_ok[:, None] & col_ok[None, :]
        bias = tl.load(b_ptr + rows[:, None] * stride_bb + cols[None, :] * stride_bk, out_ok, 0.0)
        z = z + bias
        tl.store(z_ptr + rows[:, None] * stride_zb + cols[None, :] * stride_zk, z, out_ok)


_kernels: Dict[bool, Tuple[object, object]] = {}
_device_ok: Dict[Tuple[str, int], bool] = {}


def _interpreting() -> bool:
    """whether Triton runs kernels through its interpreter (``TRITON_INTERPRET=1``), read now"""
    if triton is None:
        return False
    try:
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:  # Triton releases before the knobs module
        import os

        return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _compiled(interpret: bool) -> Tuple[object, Optional[object]]:
    """the kernel (fixed tile) and, compiled only, its autotuned version, built under the
    current mode: Triton decides when a kernel is defined whether it is compiled or interpreted
    (the interpreter runs one tile; Triton 3.2's autotuner needs a GPU driver to be built)"""
    if interpret not in _kernels:
        plain = triton.jit(masked_logits_kernel)
        tuned = None
        if not interpret:
            configs = [
                triton.Config({"BLOCK_B": bb, "BLOCK_K": bk, "BLOCK_D": bd}, num_warps=warps)
                for bb, bk, bd, warps in CONFIGS
            ]
            tuned = triton.autotune(configs, key=["K", "D", "batch_bucket"])(
                triton.jit(masked_logits_kernel)
            )
        _kernels[interpret] = plain, tuned
    return _kernels[interpret]


def applies(h: Tensor) -> bool:
    """
    Whether :func:`masked_logits` computes the pruned logits of the clipped features ``h``:
    float32 features on a CUDA device where Triton works (checked once per device by a small
    launch), or on the CPU while Triton's interpreter is on (``TRITON_INTERPRET=1``). ``False``
    without Triton, for other dtypes (float64 keeps the exact per-class loop) and other devices.

    :param h: clipped features in the compute dtype, shape :math:`B \\times D`
    :return: whether the fused kernel applies
    """
    if triton is None or not isinstance(h, Tensor) or h.dtype != SUPPORTED_DTYPE:
        return False
    if _interpreting():
        return h.device.type in ("cpu", "cuda")
    if h.device.type != "cuda":
        return False
    index = h.device.index if h.device.index is not None else torch.cuda.current_device()
    key = ("cuda", index)
    if key not in _device_ok:
        _device_ok[key] = _probe(torch.device("cuda", index))
    return _device_ok[key]


def _probe(device: torch.device) -> bool:
    """one small launch on ``device``, checked against PyTorch; a failure (no compiler, an
    unsupported GPU) is logged once and the per-class loop is used there"""
    try:
        g = torch.Generator().manual_seed(0)
        h = torch.rand(5, 11, generator=g).to(device)
        w = torch.randn(3, 11, generator=g).to(device)
        t = torch.randn(3, 11, generator=g).to(device)
        b = torch.randn(3, generator=g).to(device)
        pred = torch.tensor([0, 2, 1, 2, 0], device=device)
        z = _launch(h, pred, w, b, t, DEFAULT_CONFIG, interpret=False)
        kept = (w[None] * (w[None] > t[pred][:, None])).double()
        expected = torch.einsum("bj,bkj->bk", h.double(), kept) + b.double()
        if not torch.allclose(z.double(), expected, rtol=1e-5, atol=1e-5):
            raise RuntimeError("the kernel's logits differ from PyTorch's")
        return True
    except Exception as e:  # any failure to compile or run: keep the per-class loop
        log.warning(f"LINe: fused GPU scoring unavailable on {device} ({e}); using the loop")
        return False


def masked_logits(h: Tensor, pred: Tensor, w: Tensor, b: Tensor, threshold: Tensor) -> Tensor:
    """
    The pruned logits :math:`z_{bk} = \\sum_j h_{bj} W_{kj} [W_{kj} > T_{l_b j}] + b_k` in one
    kernel launch; the same as the core's per-class loop up to the order of float32 sums. Call
    it where :func:`applies` is ``True``.

    :param h: clipped features, float32, shape :math:`B \\times D`
    :param pred: predicted class :math:`l_b` of each row, int64, shape :math:`B`
    :param w: final-layer weights, shape :math:`K \\times D`, same dtype and device as ``h``
    :param b: bias, shape :math:`K` or :math:`B \\times K` (rows rescaled one by one)
    :param threshold: per-class weight thresholds, shape :math:`K \\times D` (:math:`+\\infty`
        where the activation mask drops the neuron, :math:`-\\infty` where nothing is pruned)
    :return: pruned logits, float32, shape :math:`B \\times K`
    :raises ValueError: on shapes, dtypes or devices that do not match, a predicted class out of
        range, or where no kernel can run (without Triton)
    """
    _check(h, pred, w, b, threshold)
    interpret = _interpreting()
    tile = DEFAULT_CONFIG if interpret else None
    return _launch(h, pred, w, b, threshold, tile, interpret)


def _check(h: Tensor, pred: Tensor, w: Tensor, b: Tensor, threshold: Tensor) -> None:
    if triton is None:
        raise ValueError("fused scoring needs Triton, which does not import here")
    named = {"h": h, "pred": pred, "w": w, "b": b, "threshold": threshold}
    for name, value in named.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
    if h.dim() != 2:
        raise ValueError(f"h must be B x D, got shape {tuple(h.shape)}")
    batch, width = h.shape
    if w.dim() != 2 or w.shape[1] != width or w.shape[0] == 0:
        raise ValueError(f"w must be K x D with D = {width}, got shape {tuple(w.shape)}")
    classes = w.shape[0]
    if threshold.shape != w.shape:
        raise ValueError(
            f"threshold must be K x D = {tuple(w.shape)}, got {tuple(threshold.shape)}"
        )
    if b.shape not in ((classes,), (batch, classes)):
        raise ValueError(f"b must have shape K = ({classes},) or B x K, got {tuple(b.shape)}")
    if pred.shape != (batch,) or pred.dtype != torch.int64:
        raise ValueError(
            f"pred must be int64 of shape ({batch},), got {pred.dtype} {tuple(pred.shape)}"
        )
    for name in ("h", "w", "b", "threshold"):
        if named[name].dtype != SUPPORTED_DTYPE:
            raise ValueError(f"{name} must be {SUPPORTED_DTYPE}, got {named[name].dtype}")
    devices = {value.device for value in named.values()}
    if len(devices) > 1:
        raise ValueError(f"h, pred, w, b and threshold must be on one device, got {devices}")
    if h.device.type != "cuda" and not _interpreting():
        raise ValueError(
            f"fused scoring runs on CUDA tensors (on {h.device.type} ones only through Triton's "
            "interpreter, TRITON_INTERPRET=1)"
        )
    if batch:
        low, high = torch.aminmax(pred)
        low, high = int(low), int(high)
        if low < 0 or high >= classes:
            raise ValueError(f"pred must hold classes in [0, {classes}), got [{low}, {high}]")


def _launch(
    h: Tensor,
    pred: Tensor,
    w: Tensor,
    b: Tensor,
    threshold: Tensor,
    tile: Optional[Tuple[int, int, int, int]],
    interpret: bool,
) -> Tensor:
    """one launch; ``tile`` (rows, classes, features, warps) or ``None`` for the autotuner"""
    batch, width = h.shape
    classes = w.shape[0]
    z = torch.empty(batch, classes, dtype=h.dtype, device=h.device)
    if batch == 0:
        return z
    if h.device.type == "cuda":  # Triton launches on the current device
        with torch.cuda.device(h.device):
            return _run(h, pred.contiguous(), w, b, threshold, z, tile, interpret)
    return _run(h, pred.contiguous(), w, b, threshold, z, tile, interpret)


def _run(h, pred, w, b, threshold, z, tile, interpret: bool) -> Tensor:
    batch, width = h.shape
    classes = w.shape[0]
    bias = b.expand(batch, classes)  # a bias of K: stride 0 over the rows
    plain, tuned = _compiled(interpret)
    args = (h, pred, w, threshold, bias, z, batch, classes, width)
    args += (min(triton.next_power_of_2(batch), 1024),)
    args += (*h.stride(), *w.stride(), *threshold.stride(), *bias.stride(), *z.stride())
    if tile is None:

        def grid(meta):
            return triton.cdiv(batch, meta["BLOCK_B"]), triton.cdiv(classes, meta["BLOCK_K"])

        tuned[grid](*args)
    else:
        rows, cols, feats, warps = tile
        grid = (triton.cdiv(batch, rows), triton.cdiv(classes, cols))
        plain[grid](*args, BLOCK_B=rows, BLOCK_K=cols, BLOCK_D=feats, num_warps=warps)
    return z
