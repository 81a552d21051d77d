"""
Fitting under :mod:`torch.distributed`: two CPU processes on the gloo backend, each fitting on
its own shard, give the detector of a single-process fit. The shards are uneven, one process
sees no sample of class 0, and in another run one process sees no sample at all. A
``DistributedSampler`` pads the shards of an odd number of samples with a repeat: ``fit`` drops it,
so that every sample counts once.
"""

import os
import socket
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from line_plugin import LINe
from line_plugin.plugin import sample as line_sample
from line_plugin.plugin.sample import ActivationSample

pytestmark = pytest.mark.slow  # two processes: seconds

WORLD = 2
NUM_CLASSES, NUM_FEATURES, N = 5, 11, 301
SETTING = {"p_a": 0.5, "p_w": 0.7, "clip": None, "clip_quantile": 0.9}
SAMPLE_CAPACITY = 100  # small, so that the processes keep their activations at different strides


def dataset():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(NUM_CLASSES, NUM_FEATURES, generator=g)
    b = torch.randn(NUM_CLASSES, generator=g)
    y = (torch.arange(N) % NUM_CLASSES)[torch.randperm(N, generator=g)]
    centers = torch.rand(NUM_CLASSES, NUM_FEATURES, generator=g) * 2
    x = torch.relu(centers[y] + torch.randn(N, NUM_FEATURES, generator=g))
    test = torch.relu(torch.randn(50, NUM_FEATURES, generator=g) + 0.5) * 1.5
    return x, y, w, b, test


def shards(scenario: str, y: torch.Tensor):
    """indices of each process's shard"""
    everything = torch.arange(N)
    if scenario == "empty":  # the second process has no sample at all
        return [everything, everything[:0]]
    # uneven: the first process gets every sample of class 0 and a quarter of the others, the
    # second the rest (more than 1.5 times as many, none of class 0)
    first = (y == 0) | (everything % 4 == 0)
    return [everything[first], everything[~first]]


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        x, y, w, b, test = dataset()
        results = {}
        for scenario in ("uneven", "empty"):
            shard = Subset(TensorDataset(x, y), shards(scenario, y)[rank].tolist())
            loader = DataLoader(shard, batch_size=16 if rank == 0 else 7)
            det = LINe(nn.Identity(), w, b, **SETTING).fit(loader, progress=False)
            results[scenario] = {
                "state": det.state_dict(),
                "masks": {"keep": det.activation_keep, "threshold": det.weight_threshold},
                "scores32": det.predict_features(test),
                "scores64": det.predict_features(test.double()),
            }
        sampler = DistributedSampler(TensorDataset(x, y), WORLD, rank, shuffle=True, seed=3)
        loader = DataLoader(TensorDataset(x, y), batch_size=20, sampler=sampler)
        det = LINe(nn.Identity(), w, b, **SETTING).fit(loader, progress=False)
        results["sampler"] = {"state": det.state_dict(), "padded": sampler.total_size}
        with mock.patch.object(line_sample, "SAMPLE_CAPACITY", SAMPLE_CAPACITY):
            sample = ActivationSample()
            for batch in shards("uneven", y)[rank].split(13):
                sample.add(x[batch])
            own_stride = sample.stride
            sample.all_reduce()
        results["sample"] = {
            "own_stride": own_stride,
            "stride": sample.stride,
            "sample": sample.values(),
        }
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


@pytest.fixture(scope="module")
def single():
    x, y, w, b, test = dataset()
    det = LINe(None, w, b, **SETTING).fit_features(x, y)
    return {
        "state": det.state_dict(),
        "masks": {"keep": det.activation_keep, "threshold": det.weight_threshold},
        "scores32": det.predict_features(test),
        "scores64": det.predict_features(test.double()),
    }


def assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def test_the_shards_are_uneven_and_lack_classes():
    _, y, *_ = dataset()
    first, second = shards("uneven", y)
    assert len(first) + len(second) == N and len(second) > 1.5 * len(first)
    assert (y[second] != 0).all() and (y[first] == 0).any()


def test_all_processes_get_the_same_detector_bitwise(ranks):
    for scenario in ("uneven", "empty"):
        assert_same(ranks[0][scenario], ranks[1][scenario], scenario)


def test_uneven_shards_give_the_single_process_detector(ranks, single):
    got, expected = ranks[0]["uneven"], single
    state, reference = got["state"], expected["state"]
    # class means to float64 rounding: the sums of n values in another order differ by at most
    # 2 gamma_n times the sum of their magnitudes (here all features are >= 0)
    counts = reference["class_counts"].double()[:, None]
    n = counts.max()
    bound = 2 * n * 2**-53 / (1 - n * 2**-53) * reference["class_means"]
    error = (state["class_means"] - reference["class_means"]).abs()
    assert (error <= bound).all()
    for name in ("class_counts", "weight", "bias"):
        assert torch.equal(state[name], reference[name]), name
    assert_same(got["masks"], expected["masks"], "masks")
    assert state["hyperparameters"] == reference["hyperparameters"]  # the fitted clip, exactly
    sample, reference_sample = state["activation_sample"], reference["activation_sample"]
    assert torch.equal(sample.sort().values, reference_sample.sort().values)
    # scoring reads the masks, not the means: the very same scores
    assert torch.equal(got["scores32"], expected["scores32"])
    assert torch.equal(got["scores64"], expected["scores64"])


def test_a_process_without_samples(ranks, single):
    # adding the other process's zeros is exact: the single-process detector, bitwise
    assert_same(ranks[0]["empty"], single, "empty")


def test_activation_samples_are_kept_at_one_rate(ranks):
    x, y, *_ = dataset()
    own = [r["sample"]["own_stride"] for r in ranks]
    assert own[0] < own[1]  # the larger shard had thinned its sample further
    stride = ranks[0]["sample"]["stride"]
    assert stride == ranks[1]["sample"]["stride"] >= max(own)
    assert stride & (stride - 1) == 0  # a power of two
    # each process contributes its activations whose (local) index is a multiple of the stride
    parts = [x[shard].flatten()[::stride] for shard in shards("uneven", y)]
    expected = torch.cat(parts)
    assert expected.numel() <= SAMPLE_CAPACITY
    if stride > max(own):  # the smallest common stride that fits
        halved = [x[shard].flatten()[:: stride // 2] for shard in shards("uneven", y)]
        assert sum(p.numel() for p in halved) > SAMPLE_CAPACITY
    for r in ranks:
        assert torch.equal(r["sample"]["sample"], expected)


def test_a_distributed_samplers_padding_is_not_counted(ranks, single):
    assert N % WORLD and ranks[0]["sampler"]["padded"] == N + 1  # one sample repeated
    state, reference = ranks[0]["sampler"]["state"], single["state"]
    assert torch.equal(state["class_counts"], reference["class_counts"])
    assert int(state["class_counts"].sum()) == N
    n = reference["class_counts"].double().max()
    bound = 2 * n * 2**-53 / (1 - n * 2**-53) * reference["class_means"]
    assert ((state["class_means"] - reference["class_means"]).abs() <= bound).all()
    assert ranks[1]["sampler"]["state"]["class_counts"].sum() == N
