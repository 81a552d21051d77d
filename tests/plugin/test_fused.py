"""
Fused scoring (:mod:`line_plugin.plugin.fused`) against a per-class loop (the core's algorithm).
Without a GPU the kernel runs through Triton's interpreter: the ``interpreter`` fixture sets
``TRITON_INTERPRET=1`` for one test only (Triton reads it when a kernel is defined, and the
module defines its interpreted kernel apart, at first use under the interpreter). The tests
marked ``cuda`` compile the kernel on a GPU and are skipped without one.
"""

import importlib.util
import sys
from typing import Tuple

import pytest
import torch
from torch import Tensor

from line_plugin import LINe
from line_plugin.plugin import fused

pytest.importorskip("triton")

# B, K, D: none a multiple of any tile of fused.CONFIGS
SHAPE = (37, 45, 70)


@pytest.fixture
def interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert fused._interpreting()
    yield
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not fused._interpreting()


def loop(h, pred, w, b, threshold) -> Tensor:
    """the per-class loop of the core's scoring: one masked matrix per predicted class"""
    z = torch.empty(len(h), len(w), dtype=h.dtype)
    for label in pred.unique().tolist():
        rows = pred == label
        masked = w * (w > threshold[label])
        z[rows] = h[rows] @ masked.T + (b[rows] if b.dim() == 2 else b)
    return z


def labels(kind: str, batch: int, classes: int, g: torch.Generator) -> Tensor:
    """predicted classes: all rows one class, every row its own class, or many rows of one
    class and every other row a different class"""
    if kind == "one":
        return torch.full((batch,), 3)
    if kind == "distinct":
        return torch.randperm(classes, generator=g)[:batch]
    many = torch.full((batch // 2,), 7)
    others = torch.randperm(classes - 1, generator=g)[: batch - batch // 2]
    return torch.cat([many, others + (others >= 7)])[torch.randperm(batch, generator=g)]


def dyadic_problem(
    kind: str, row_bias: bool, device="cpu", shape=SHAPE, seed=0
) -> Tuple[Tensor, ...]:
    """
    Features, weights, thresholds and bias on a grid of multiples of 1/128 small enough that
    every product and sum is exact in float32: any order of summation gives the same bits, so
    the kernel must match the loop exactly, mask bit for mask bit. Thresholds share the weights'
    grid (ties ``W == T`` are pruned: strict ``>``) and hold ``+inf`` (dropped neurons) and
    ``-inf`` (nothing pruned) columns.
    """
    batch, classes, width = shape
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(0, 8, (batch, width), generator=g) / 8
    w = torch.randint(-8, 9, (classes, width), generator=g) / 16
    threshold = torch.randint(-8, 9, (classes, width), generator=g) / 16
    dropped = torch.rand(classes, width, generator=g) < 0.2
    threshold[dropped] = float("inf")
    threshold[torch.rand(classes, width, generator=g) < 0.1] = -float("inf")
    threshold[5] = float("inf")  # a class that drops every neuron
    threshold[7] = -float("inf")  # a class that prunes nothing
    b_shape = (batch, classes) if row_bias else (classes,)
    b = torch.randint(-64, 65, b_shape, generator=g) / 4
    pred = labels(kind, batch, classes, g)
    return tuple(t.to(device) for t in (h, pred, w, b, threshold))


# -- the kernel alone ----------------------------------------------------------------------------


@pytest.mark.parametrize("tile", fused.CONFIGS)
@pytest.mark.parametrize("kind", ["one", "distinct", "mixed"])
def test_every_tile_matches_the_loop_exactly(interpreter, tile, kind):
    h, pred, w, b, threshold = dyadic_problem(kind, row_bias=False)
    z = fused._launch(h, pred, w, b, threshold, tile, interpret=True)
    assert z.shape == (SHAPE[0], SHAPE[1]) and z.dtype == torch.float32
    assert torch.equal(z, loop(h, pred, w, b, threshold))


@pytest.mark.parametrize("row_bias", [False, True])
@pytest.mark.parametrize("kind", ["one", "distinct", "mixed"])
def test_masked_logits_matches_the_loop_exactly(interpreter, kind, row_bias):
    h, pred, w, b, threshold = dyadic_problem(kind, row_bias)
    assert fused.applies(h)
    z = fused.masked_logits(h, pred, w, b, threshold)
    expected = loop(h, pred, w, b, threshold)
    assert torch.equal(z, expected)
    # the masks matter here: unpruned logits differ
    assert not torch.equal(z, torch.addmm(b, h, w.T))


def test_strided_inputs(interpreter):
    h, pred, w, b, threshold = dyadic_problem("mixed", row_bias=True)
    # transposed copies: the same values, other strides
    h_t, w_t, t_t, b_t = (x.T.contiguous().T for x in (h, w, threshold, b))
    pred_t = torch.stack([pred, -pred], dim=1)[:, 0]  # every other element
    assert h_t.stride() != h.stride() and pred_t.stride() == (2,)
    z = fused.masked_logits(h_t, pred_t, w_t, b_t, t_t)
    assert torch.equal(z, loop(h, pred, w, b, threshold))


def test_float32_rounding_only(interpreter):
    """random float32 values: the kernel and the loop sum in different orders, and both stay
    within the float32 rounding bound of the exact (float64) masked logits"""
    batch, classes, width = SHAPE
    g = torch.Generator().manual_seed(1)
    h = torch.rand(batch, width, generator=g) * 3
    w = torch.randn(classes, width, generator=g)
    threshold = torch.randn(classes, width, generator=g)
    b = torch.randn(classes, generator=g)
    pred = labels("mixed", batch, classes, g)
    z = fused.masked_logits(h, pred, w, b, threshold)
    kept = (w[None] * (w[None] > threshold[pred][:, None])).double()
    exact = torch.einsum("bj,bkj->bk", h.double(), kept) + b.double()
    magnitude = h.double().abs() @ w.double().abs().T + b.double().abs()
    bound = (width + 1) * torch.finfo(torch.float32).eps * magnitude
    assert ((z.double() - exact).abs() <= bound).all()
    assert ((loop(h, pred, w, b, threshold).double() - exact).abs() <= bound).all()


def test_empty_batch(interpreter):
    h, pred, w, b, threshold = dyadic_problem("mixed", row_bias=False)
    z = fused.masked_logits(h[:0], pred[:0], w, b, threshold)
    assert z.shape == (0, SHAPE[1])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_overflow_gives_non_finite_logits(interpreter):
    """huge features overflow float32 in the kernel as in the loop: the detector then rescores
    those rows in float64"""
    h, pred, w, b, threshold = dyadic_problem("mixed", row_bias=False)
    h[:4] = 3e38
    z = fused.masked_logits(h, pred, w, b, threshold)
    expected = loop(h, pred, w, b, threshold)
    for logits in (z, expected):
        assert not torch.isfinite(logits[:4]).all(dim=1).any()
    assert torch.equal(z[4:], expected[4:])


# -- through the detector ------------------------------------------------------------------------


def problem(seed: int = 0, classes: int = 45, width: int = 70, batch: int = 37):
    """post-ReLU training features of every class, and a test batch predicting many classes"""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, width, generator=g)
    b = torch.randn(classes, generator=g) / 4
    y = torch.arange(4 * classes) % classes

    def features(lab):
        return torch.rand(len(lab), width, generator=g) + 2 * torch.relu(w[lab])

    test_labels = torch.cat([torch.full((batch // 2,), 2), torch.arange(batch - batch // 2) + 3])
    return features(y), y, w, b, features(test_labels)


def counted(monkeypatch):
    """count the calls of fused.masked_logits"""
    calls = []
    original = fused.masked_logits

    def spy(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(fused, "masked_logits", spy)
    return calls


SETTINGS = [(0.9, 0.9, 1.0), (0.5, 0.5, None), (0.0, 0.7, 2.0), (0.7, 0.0, 1.0)]


@pytest.mark.parametrize("p_a, p_w, clip", SETTINGS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_detector_scores(monkeypatch, p_a, p_w, clip, dtype):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, y, w, b, test = problem()
    det = LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip).fit_features(x, y)
    test = test.to(dtype)
    looped = det.predict_features(test)  # no interpreter: the CPU keeps the loop
    looped_z = det.pruned_logits(test)
    calls = counted(monkeypatch)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    scores = det.predict_features(test)
    z = det.pruned_logits(test)
    assert scores.dtype == looped.dtype and z.dtype == looped_z.dtype
    if dtype == torch.float64 or p_w == 0:
        # float64 stays on the exact loop; without weight pruning no masked matrix is needed
        assert calls == []
        assert torch.equal(scores, looped) and torch.equal(z, looped_z)
        return
    assert len(calls) == 2  # predict_features and pruned_logits, one launch each
    h = test.double() if clip is None else test.double().clamp(max=clip)
    magnitude = h.abs() @ w.double().abs().T + b.double().abs()
    bound = (w.shape[1] + 1) * torch.finfo(torch.float32).eps * magnitude
    assert ((z.double() - looped_z.double()).abs() <= 2 * bound).all()
    energy_error = 2 * bound.amax(dim=1) + 1e-6 * (1 + looped.double().abs())
    assert ((scores.double() - looped.double()).abs() <= energy_error).all()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_detector_overflow_rescaling(monkeypatch):
    """huge float32 features: the kernel's logits overflow, the rows are rescored in float64 by
    the loop (the rescaled bias is B x K), the others by the kernel"""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, y, w, b, test = problem(1)
    det = LINe(None, w, b, p_a=0.5, p_w=0.5, clip=None).fit_features(x, y)
    test[:3] = 3e38
    looped = det.predict_features(test)
    calls = counted(monkeypatch)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    scores = det.predict_features(test)
    assert len(calls) == 1 and calls[0] == test.shape
    assert torch.isfinite(scores).all() and (scores[:3] < -1e30).all()
    assert torch.equal(scores[:3], looped[:3])  # the same float64 rescaled path
    torch.testing.assert_close(scores[3:], looped[3:], rtol=1e-5, atol=1e-5)


# -- when it applies -----------------------------------------------------------------------------


def test_applies_only_to_float32_on_the_cpu_under_the_interpreter(interpreter):
    assert fused.applies(torch.zeros(2, 3))
    for dtype in (torch.float64, torch.float16, torch.bfloat16, torch.int64):
        assert not fused.applies(torch.zeros(2, 3, dtype=dtype))


def test_the_cpu_keeps_the_loop_without_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not fused.applies(torch.zeros(2, 3))
    x, y, w, b, test = problem()
    calls = counted(monkeypatch)
    LINe(None, w, b).fit_features(x, y).predict_features(test)
    assert calls == []


def test_without_triton(monkeypatch, interpreter):
    monkeypatch.setattr(fused, "triton", None)
    assert not fused.applies(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="Triton"):
        fused.masked_logits(*dyadic_problem("one", False))


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="CUDA tensors"):
        fused.masked_logits(*dyadic_problem("one", False))


def test_imports_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton raises ImportError
    monkeypatch.setitem(sys.modules, "triton.language", None)
    spec = importlib.util.spec_from_file_location("fused_without_triton", fused.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.triton is None
    assert not module.applies(torch.zeros(2, 3))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: {**p, "h": p["h"][0]}, "h must be B x D"),
        (lambda p: {**p, "w": p["w"][:, :-1]}, "w must be K x D"),
        (lambda p: {**p, "threshold": p["threshold"][:-1]}, "threshold must be K x D"),
        (lambda p: {**p, "b": p["b"][:-1]}, "b must have shape"),
        (lambda p: {**p, "pred": p["pred"][:-1]}, "pred must be int64"),
        (lambda p: {**p, "pred": p["pred"].int()}, "pred must be int64"),
        (lambda p: {**p, "pred": p["pred"] + SHAPE[1]}, r"pred must hold classes in \[0, 45\)"),
        (lambda p: {**p, "pred": p["pred"] - SHAPE[1]}, "pred must hold classes"),
        (lambda p: {**p, "h": p["h"].double()}, "h must be torch.float32"),
        (lambda p: {**p, "w": p["w"].half()}, "w must be torch.float32"),
        (lambda p: {**p, "b": p["b"].tolist()}, "b must be a tensor"),
    ],
)
def test_bad_inputs(interpreter, change, message):
    names = ("h", "pred", "w", "b", "threshold")
    problem_ = dict(zip(names, dyadic_problem("mixed", row_bias=False)))
    with pytest.raises(ValueError, match=message):
        fused.masked_logits(**change(problem_))


# -- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("row_bias", [False, True])
def test_cuda_every_tile_matches_the_loop_exactly(row_bias):
    problems = [dyadic_problem(kind, row_bias, "cuda") for kind in ("one", "distinct", "mixed")]
    h, pred, w, b, threshold = problems[0]
    assert fused.applies(h) and not fused.applies(h.double()) and not fused.applies(h.cpu())
    for h, pred, w, b, threshold in problems:
        expected = loop(h, pred, w, b, threshold)
        assert torch.equal(fused.masked_logits(h, pred, w, b, threshold), expected)  # autotuned
        for tile in fused.CONFIGS:
            z = fused._launch(h, pred, w, b, threshold, tile, interpret=False)
            assert torch.equal(z, expected), tile


@pytest.mark.cuda
def test_cuda_imagenet_scale_memory_and_rounding():
    """K = 1000, D = 2048, batch 256 of 256 classes: float32 rounding only, and no memory beyond
    the B x K output"""
    g = torch.Generator().manual_seed(0)
    batch, classes, width = 256, 1000, 2048
    h = (torch.rand(batch, width, generator=g)).cuda()
    w = (torch.randn(classes, width, generator=g) / 30).cuda()
    threshold = (torch.randn(classes, width, generator=g) / 30).cuda()
    b = torch.randn(classes, generator=g).cuda()
    pred = torch.randperm(classes, generator=g)[:batch].cuda()
    fused.masked_logits(h, pred, w, b, threshold)  # autotuning
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    z = fused.masked_logits(h, pred, w, b, threshold)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    assert extra <= batch * classes * 4 + 2**20  # the output, and small change
    expected = loop(h.double(), pred, w.double(), b.double(), threshold.double())
    magnitude = h.double() @ w.double().abs().T + b.double().abs()
    bound = (width + 1) * torch.finfo(torch.float32).eps * magnitude
    assert ((z.double() - expected).abs() <= bound).all()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_cuda_detector_uses_the_kernel(monkeypatch, dtype):
    """on CUDA the detector picks the kernel by itself (float64 keeps the loop), and scores as
    the loop does on the same device, up to float32 rounding"""
    x, y, w, b, test = problem()
    det = LINe(None, w, b).to("cuda").fit_features(x.cuda(), y.cuda())
    test = test.to(dtype).cuda()
    with monkeypatch.context() as patch:
        patch.setattr(fused, "applies", lambda h: False)
        looped = det.predict_features(test)
    calls = counted(monkeypatch)
    scores = det.predict_features(test)
    assert len(calls) == (0 if dtype == torch.float64 else 1)
    assert scores.device.type == "cuda" and scores.dtype == looped.dtype
    if dtype == torch.float64:
        assert torch.equal(scores, looped)
    else:
        torch.testing.assert_close(scores, looped, rtol=1e-5, atol=1e-5)
