"""
LINe inside pytorch-ood's own machinery, unchanged: Benchmark.evaluate, GridSearch, the detector
API conventions (info, signatures, hyperparameter fractions, device handling).
"""

import inspect

import pytest
import torch
from pytorch_ood.api import DetectorInfo, FeaturesDetector, Task
from pytorch_ood.benchmark import Benchmark
from pytorch_ood.detector.energy import EnergyBased
from pytorch_ood.metrics import OODMetrics
from pytorch_ood.utils import GridSearch
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from line_plugin import LINe

NUM_CLASSES, NUM_FEATURES, INPUT = 4, 16, 8


class TinyNet(torch.nn.Module):
    """input -> ReLU features -> linear head"""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.body = torch.nn.Linear(INPUT, NUM_FEATURES)
        self.fc = torch.nn.Linear(NUM_FEATURES, NUM_CLASSES)
        with torch.no_grad():
            self.body.weight.copy_(torch.randn(NUM_FEATURES, INPUT, generator=g))
            self.fc.weight.copy_(torch.randn(NUM_CLASSES, NUM_FEATURES, generator=g))

    def features(self, x):
        return torch.relu(self.body(x))

    def forward(self, x):
        return self.fc(self.features(x))


def blobs(n, seed, ood=False):
    g = torch.Generator().manual_seed(seed)
    if ood:
        return TensorDataset(torch.randn(n, INPUT, generator=g) * 4 + 6, -torch.ones(n).long())
    y = torch.arange(n) % NUM_CLASSES
    centers = torch.randn(NUM_CLASSES, INPUT, generator=torch.Generator().manual_seed(99)) * 3
    return TensorDataset(centers[y] + torch.randn(n, INPUT, generator=g), y)


class BlobBenchmark(Benchmark):
    """ID: Gaussian blobs around 4 centres; OOD: a far-away blob and uniform noise"""

    ood_names = ["far", "noise"]

    def train_set(self):
        return blobs(400, 1)

    def test_sets(self, known=True, unknown=True):
        g = torch.Generator().manual_seed(3)
        noise = TensorDataset(
            torch.rand(100, INPUT, generator=g) * 20 - 10, -torch.ones(100).long()
        )
        ood = [blobs(100, 2, ood=True), noise]
        if known and unknown:
            return [ConcatDataset([blobs(200, 4), o]) for o in ood]
        if unknown:
            return ood
        if known:
            return [blobs(200, 4)]
        raise ValueError("known or unknown must be true")


@pytest.fixture
def net():
    return TinyNet().eval()


def detector(net, **kw):
    return LINe(net.features, net.fc.weight, net.fc.bias, **kw)


def test_api_conventions():
    assert issubclass(LINe, FeaturesDetector)
    assert isinstance(LINe.info, DetectorInfo)
    assert LINe.info.tasks == frozenset({Task.CLASSIFICATION})
    assert LINe.info.paper.year == 2023
    assert LINe.requires_fit
    for name in ("p_a", "p_w"):
        assert all(0 <= v <= 1 for v in LINe.hyperparameter_space[name])
    assert "clip" in LINe.hyperparameter_space
    assert list(inspect.signature(LINe.predict_features).parameters) == ["self", "x"]
    params = inspect.signature(LINe.__init__).parameters
    for name in ("encoder", "w", "b", "p_a", "p_w", "clip"):
        assert name in params


def test_benchmark_evaluate(net):
    bench = BlobBenchmark()
    loader = DataLoader(bench.train_set(), batch_size=64)
    line = detector(net, p_a=0.5, p_w=0.5, clip=None).fit(loader, progress=False)
    energy = EnergyBased(net)
    results = bench.evaluate([line, energy], loader_kwargs={"batch_size": 64})
    assert len(results) == 4
    by = {(r["Detector"], r["Dataset"]): r for r in results}
    for dataset in ("far", "noise"):
        r = by[("LINe", dataset)]
        for metric in ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR"):
            assert 0 <= r[metric] <= 1, (metric, r[metric])
    # the benchmark scored the cached encoder features with predict_features
    for dataset, test_set in zip(bench.ood_names, bench.test_sets()):
        x, y = next(iter(DataLoader(test_set, batch_size=len(test_set))))
        metrics = OODMetrics()
        metrics.update(line.predict_features(net.features(x)), y)
        expected = metrics.compute()
        # assertAlmostEqual(..., places=12)
        assert round(by[("LINe", dataset)]["AUROC"] - expected["AUROC"], 12) == 0


def test_grid_search(net):
    bench = BlobBenchmark()
    fit_loader = DataLoader(bench.train_set(), batch_size=64)
    val_loader = DataLoader(bench.test_sets()[0], batch_size=64)
    det = detector(net)
    space = {"p_a": [0.0, 0.5], "p_w": [0.0, 0.9], "clip": [None, 1.0]}
    search = GridSearch(det, fit_loader, val_loader, hyperparameter_space=space)
    best = search.run()
    assert len(search.results_) == 8
    assert det.get_hyperparameters() == best
    scores = det.predict_features(net.features(val_loader.dataset[0][0][None]))
    assert scores.shape == (1,)


def test_device_follows_detector(net):
    det = detector(net).fit(DataLoader(blobs(80, 1), batch_size=16), progress=False)
    det.to("cpu")
    assert det.device == torch.device("cpu")
    assert det.predict(torch.randn(5, INPUT)).shape == (5,)


def test_empty_batch(net):
    det = detector(net).fit(DataLoader(blobs(80, 1), batch_size=16), progress=False)
    assert det.predict_features(torch.zeros(0, NUM_FEATURES)).shape == (0,)
