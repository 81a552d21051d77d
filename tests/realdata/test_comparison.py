"""The comparison on the shared data: the benchmark's splits, a tiny run and its report."""

import json

import pytest
from torchvision import transforms as T

from line_plugin.evaluation import (
    CIFAR10Benchmark,
    Sizes,
    compare_detectors,
    results_table,
    summary_table,
    write_report,
)
from line_plugin.plugin.auto import CANDIDATES

pytestmark = pytest.mark.slow  # reads the shared models and data


def test_splits_are_disjoint_and_labelled():
    sizes = Sizes(fit=200, val_id=50, val_ood=40, test_id=30, test_ood=20)
    bench = CIFAR10Benchmark(T.ToTensor(), sizes)
    assert bench.ood_names == ["dtd", "imagenet", "mnist", "fashion_mnist"]
    fit = bench.train_set()
    val_id, val_ood = bench.validation_sets()
    jigsaw_src = val_ood.datasets[-1].dataset
    fit_idx, val_idx, jig_idx = set(fit.indices), set(val_id.indices), set(jigsaw_src.indices)
    assert (len(fit_idx), len(val_idx), len(jig_idx)) == (200, 50, 20)
    assert not (fit_idx & val_idx or fit_idx & jig_idx or val_idx & jig_idx)
    assert len(val_ood) == 40
    assert {val_ood[i][1] for i in range(len(val_ood))} == {-1}
    tests = bench.test_sets()
    assert [len(t) for t in tests] == [50] * 4
    x, y = tests[0][0]
    assert (tuple(x.shape), y >= 0) == ((3, 32, 32), True)
    assert tests[0][49][1] == -1
    assert len(bench.test_sets(known=True, unknown=False)) == 1
    with pytest.raises(ValueError):
        bench.test_sets(known=False, unknown=False)


def test_tiny_run_and_report(tmp_path):
    result = compare_detectors(
        "resnet18",
        Sizes.tiny(),
        detectors=["Energy", "DICE", "LINe"],
        spaces={"LINe": {"p_a": [0.0, 0.9], "p_w": [0.0, 0.9], "clip": [None, 1.0]}},
        ablation=True,
        features_dir=tmp_path / "features",
        progress=False,
    )
    names = {r["detector"] for r in result.records}
    assert names == {
        "Energy",
        "DICE",
        "DICE (tuned)",
        "LINe (paper)",
        "LINe (tuned)",
        "LINe (auto)",
    }
    assert len(result.records) == 6 * 4
    keys = {"backbone", "detector", "dataset", "AUROC", "AUPR-IN", "AUPR-OUT"}
    for r in result.records + result.ablation:
        assert keys | {"FPR95TPR", "FPR95"} <= set(r)
        assert 0 <= r["FPR95"] <= 1 and 0 <= r["AUROC"] <= 1
    assert len(result.ablation) == 8 * 4
    assert set(result.meta["tuned"]) == {"DICE (tuned)", "LINe (tuned)"}
    assert result.meta["auto"]["name"] in CANDIDATES
    assert result.meta["n"]["fit"] == 300
    assert result.meta["test_accuracy"] > 0.6
    files = write_report(result, tmp_path / "out")
    assert [f.suffix for f in files] == [".json", ".md", ".png", ".png"]
    data = json.loads(files[0].read_text())
    assert data["records"] == result.records
    assert "| LINe (tuned) |" in files[1].read_text()
    assert results_table(result.records) in files[1].read_text()
    assert "| LINe (tuned) |" in summary_table(result.records)
