"""
Devices, as pytorch-ood's ``Detector.to`` defines them: ``det.to(device)`` moves the encoder and
every tensor of the fitted state (head, masks, activation sample, scoring caches), which holds no
float64 tensor after a float32 fit; the exact float64 class means stay on the host (NumPy, which
``to`` leaves alone). Features on another device than the detector's are moved to it, as
pytorch-ood's own wrapper of ``predict_features`` does, and scores come back on the detector's
device. The tests marked ``cuda`` need a GPU and are skipped without one.
"""

import copy
import tempfile
from typing import Dict
from unittest import mock

import pytest
import torch
from synthetic import NUM_FEATURES, assert_same_state, problem, rounding_bound
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from line_plugin import LINe

SETTINGS = [(0.9, 0.9, 1.0), (0.1, 0.1, 0.8), (0.5, 0.0, None), (0.0, 0.0, None)]


def held_tensors(det: LINe) -> Dict[str, Tensor]:
    """every tensor the detector holds, by name, including the cached compute tensors"""
    found = {}

    def walk(name, value):
        if isinstance(value, Tensor):
            found[name] = value
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{name}.{key}", inner)
        elif isinstance(value, (list, tuple)):
            for i, inner in enumerate(value):
                walk(f"{name}.{i}", inner)
        elif isinstance(value, nn.Module):
            for key, inner in value.state_dict().items():
                walk(f"{name}.{key}", inner)

    for name, value in vars(det).items():
        walk(name, value)
    return found


def scored(det: LINe) -> LINe:
    """the detector, with its compute tensors for float32 and float64 cached"""
    det.predict_features(torch.rand(3, NUM_FEATURES))
    det.predict_features(torch.rand(3, NUM_FEATURES, dtype=torch.float64))
    return det


def fitted(p_a=0.9, p_w=0.9, clip=1.0, seed=0, **kw) -> LINe:
    x, y, w, b = problem(seed)
    return LINe(None, w, b, p_a=p_a, p_w=p_w, clip=clip, **kw).fit_features(x, y)


def probe(n=40, seed=11, dtype=torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.relu(torch.randn(n, NUM_FEATURES, generator=g) + 0.5) * 1.5).to(dtype)


@pytest.fixture
def ieee_float32():
    # the rounding bounds assume IEEE float32 products (no TF32 on CUDA)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


# -- everywhere ----------------------------------------------------------------------------------


def test_a_float32_fit_holds_no_float64_tensor():
    det = scored(fitted())
    held = held_tensors(det)
    names = {"weight", "bias", "activation_keep", "weight_threshold", "activation_sample"}
    assert names <= set(held)
    assert {t.dtype for t in held.values()} <= {torch.float32, torch.bool}
    assert det.class_means.dtype == torch.float64  # the plugin's exact means: NumPy, host-side


def test_to_moves_every_tensor_of_the_state():
    # the meta device stands for any other device (one without float64, as mps)
    det = scored(fitted())
    means, held = det.class_means, held_tensors(det)
    assert det.to("meta") is det and det.device == torch.device("meta")
    moved = held_tensors(det)
    assert set(moved) == set(held)
    assert all(t.device.type == "meta" for t in moved.values())
    assert torch.equal(det.class_means, means)  # the host copy stays where it was


def test_to_cpu_keeps_the_state_bitwise():
    det = scored(fitted())
    before = copy.deepcopy(det)
    x = probe()
    assert det.to("cpu") is det
    assert det.device == torch.device("cpu")
    assert all(t.device.type == "cpu" for t in held_tensors(det).values())
    assert_same_state(det, before)
    assert torch.equal(det.predict_features(x), before.predict_features(x))


def test_predict_features_goes_through_pytorch_oods_device_wrapper():
    # pytorch-ood wraps predict_features of every FeaturesDetector to move tensor arguments to the
    # detector's device; LINe must not bypass it
    det = fitted()
    moves = []
    original = LINe._move_tensor_arguments_to_device

    def spy(args, kwargs, device):
        moves.append((args, device))
        return original(args, kwargs, device)

    x = probe()
    with mock.patch.object(LINe, "_move_tensor_arguments_to_device", staticmethod(spy)):
        det.predict_features(x)
        det.predict_features(x=x)
    # once per call, and once more where the plugin's predict_features calls the core's
    assert [device for _, device in moves] == [torch.device("cpu")] * 4
    assert moves[0][0][0] is x


def test_fit_keeps_the_detectors_device():
    det = fitted().to("cpu")
    x, y, _, _ = problem(1)
    det.fit_features(x, y)
    assert all(t.device.type == "cpu" for t in held_tensors(det).values())


# -- CUDA ----------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("setting", SETTINGS)
def test_fit_on_cpu_move_to_cuda(setting, ieee_float32):
    cpu = scored(fitted(*setting))
    gpu = copy.deepcopy(cpu).to("cuda")
    assert gpu.device.type == "cuda"
    assert all(t.device.type == "cuda" for t in held_tensors(gpu).values())
    assert_same_state(gpu, cpu)

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = probe(dtype=dtype)
        expected = cpu.predict_features(x)
        # CPU features are moved to the detector's device, and so are the scores
        scores = gpu.predict_features(x)
        assert scores.device.type == "cuda" and scores.dtype == expected.dtype
        assert torch.equal(gpu.predict_features(x.cuda()), scores)
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        bound, clear = rounding_bound(cpu, x.double(), expected, compute)
        assert clear.all()  # no near ties in this probe: both devices pick the same classes
        error = (scores.cpu().double() - expected.double()).abs()
        assert (error <= bound).all(), (dtype, (error / bound).max().item())
        # and CUDA features given to the CPU detector are scored on the CPU
        assert torch.equal(cpu.predict_features(x.cuda()), expected)

    back = gpu.to("cpu")
    assert all(t.device.type == "cpu" for t in held_tensors(back).values())
    assert_same_state(back, cpu)


@pytest.mark.cuda
@pytest.mark.parametrize("clip_quantile", [None, 0.9])
def test_fit_on_cuda_features(clip_quantile, ieee_float32):
    x, y, w, b = problem(0)
    kw = {"clip": None, "clip_quantile": clip_quantile} if clip_quantile else {}
    on_cpu = LINe(None, w, b, **kw).fit_features(x, y)
    # the class sums are accumulated in float64 on the CPU: the same detector, bitwise
    on_gpu = LINe(None, w, b, **kw).to("cuda").fit_features(x.cuda(), y.cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.class_means.device.type == "cpu"
    assert all(t.device.type == "cuda" for t in held_tensors(on_gpu).values())
    assert_same_state(on_gpu, on_cpu)
    # a CPU detector fitted on CUDA features, and a CUDA detector fitted through fit() with its
    # encoder, from a loader of CPU tensors
    assert_same_state(LINe(None, w, b, **kw).fit_features(x.cuda(), y.cuda()), on_cpu)
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    through_fit = LINe(nn.Identity(), w, b, **kw).to("cuda").fit(loader, progress=False)
    assert through_fit.activation_keep.device.type == "cuda"
    assert_same_state(through_fit, on_cpu)
    test = probe()
    torch.testing.assert_close(through_fit.predict(test).cpu(), on_cpu.predict_features(test))


@pytest.mark.cuda
def test_fit_with_an_encoder_module_on_cuda(ieee_float32):
    g = torch.Generator().manual_seed(5)
    encoder = nn.Sequential(nn.Linear(6, NUM_FEATURES), nn.ReLU())
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    inputs = torch.randn(140, 6, generator=g)
    _, y, w, b = problem(0)
    loader = DataLoader(TensorDataset(inputs, y), batch_size=32)
    on_cpu = LINe(copy.deepcopy(encoder), w, b).fit(loader, progress=False)
    on_gpu = LINe(copy.deepcopy(encoder), w, b).to("cuda").fit(loader, progress=False)
    assert next(on_gpu.encoder.parameters()).device.type == "cuda"
    # float32 features of two devices: the class means agree to float32 rounding
    torch.testing.assert_close(on_gpu.class_means.cpu(), on_cpu.class_means, rtol=1e-5, atol=1e-5)
    scores = on_gpu.predict(inputs[:20])
    assert scores.device.type == "cuda"
    torch.testing.assert_close(scores.cpu(), on_cpu.predict(inputs[:20]), rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_edge_inputs_on_cuda(ieee_float32):
    cpu = fitted(0.0, 0.0, None)
    gpu = copy.deepcopy(cpu).to("cuda")
    for dtype, value in [
        (torch.float32, 3.4e38),
        (torch.float32, -3.4e38),
        (torch.float16, 6e4),
        (torch.bfloat16, 3.3e38),
        (torch.float64, 1.7e308),
    ]:
        x = probe(6, dtype=dtype)
        x[1] = value
        x[3, ::2] = -value
        scores = gpu.predict_features(x.cuda())
        assert torch.isfinite(scores).all(), (dtype, value, scores)
        expected = cpu.predict_features(x)
        huge = expected.abs() == torch.finfo(expected.dtype).max
        assert torch.equal(scores.cpu()[huge], expected[huge])  # both saturate
        torch.testing.assert_close(scores.cpu()[~huge], expected[~huge], rtol=1e-5, atol=1e-5)
    empty = gpu.predict_features(torch.zeros(0, NUM_FEATURES, device="cuda"))
    assert empty.shape == (0,) and empty.device.type == "cuda"
    wide = torch.rand(NUM_FEATURES, 20, device="cuda")
    torch.testing.assert_close(gpu.predict_features(wide.T), gpu.predict_features(wide.T.clone()))


@pytest.mark.cuda
def test_state_round_trip_across_devices():
    gpu = fitted(0.3, 0.6, 1.5, clip_quantile=None).to("cuda")
    x, y, w, b = problem(0)
    test = probe()
    with tempfile.TemporaryDirectory() as tmp:
        gpu.save(f"{tmp}/line.pt")
        on_cpu = LINe(None, w, b).load(f"{tmp}/line.pt")
        on_gpu = LINe(None, w, b).to("cuda").load(f"{tmp}/line.pt")
    assert all(t.device.type == "cpu" for t in held_tensors(on_cpu).values())
    assert on_gpu.device.type == "cuda"
    assert all(t.device.type == "cuda" for t in held_tensors(on_gpu).values())
    assert_same_state(on_cpu, gpu)
    assert_same_state(on_gpu, gpu)
    assert torch.equal(on_gpu.predict_features(test), gpu.predict_features(test))
    assert torch.equal(on_cpu.predict_features(test), fitted(0.3, 0.6, 1.5).predict_features(test))
