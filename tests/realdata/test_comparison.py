"""The comparison on the shared data: the benchmark's splits, a tiny run and its report."""

import json
import tempfile
import unittest
from pathlib import Path

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


@pytest.mark.slow
class TestCIFAR10Benchmark(unittest.TestCase):
    def test_splits_are_disjoint_and_labelled(self):
        sizes = Sizes(fit=200, val_id=50, val_ood=40, test_id=30, test_ood=20)
        bench = CIFAR10Benchmark(T.ToTensor(), sizes)
        self.assertEqual(bench.ood_names, ["dtd", "imagenet", "mnist", "fashion_mnist"])
        fit = bench.train_set()
        val_id, val_ood = bench.validation_sets()
        jigsaw_src = val_ood.datasets[-1].dataset
        fit_idx, val_idx, jig_idx = set(fit.indices), set(val_id.indices), set(jigsaw_src.indices)
        self.assertEqual((len(fit_idx), len(val_idx), len(jig_idx)), (200, 50, 20))
        self.assertFalse(fit_idx & val_idx or fit_idx & jig_idx or val_idx & jig_idx)
        self.assertEqual(len(val_ood), 40)
        self.assertEqual({val_ood[i][1] for i in range(len(val_ood))}, {-1})
        tests = bench.test_sets()
        self.assertEqual([len(t) for t in tests], [50] * 4)
        x, y = tests[0][0]
        self.assertEqual((tuple(x.shape), y >= 0), ((3, 32, 32), True))
        self.assertEqual(tests[0][49][1], -1)
        self.assertEqual(len(bench.test_sets(known=True, unknown=False)), 1)
        with self.assertRaises(ValueError):
            bench.test_sets(known=False, unknown=False)


@pytest.mark.slow
class TestRunBenchmark(unittest.TestCase):
    def test_tiny_run_and_report(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = compare_detectors(
                "resnet18",
                Sizes.tiny(),
                detectors=["Energy", "DICE", "LINe"],
                spaces={"LINe": {"p_a": [0.0, 0.9], "p_w": [0.0, 0.9], "clip": [None, 1.0]}},
                ablation=True,
                features_dir=Path(tmp) / "features",
                progress=False,
            )
            names = {r["detector"] for r in result.records}
            self.assertEqual(
                names,
                {"Energy", "DICE", "DICE (tuned)", "LINe (paper)", "LINe (tuned)", "LINe (auto)"},
            )
            self.assertEqual(len(result.records), 6 * 4)
            keys = {"backbone", "detector", "dataset", "AUROC", "AUPR-IN", "AUPR-OUT"}
            for r in result.records + result.ablation:
                self.assertTrue(keys | {"FPR95TPR", "FPR95"} <= set(r))
                self.assertTrue(0 <= r["FPR95"] <= 1 and 0 <= r["AUROC"] <= 1)
            self.assertEqual(len(result.ablation), 8 * 4)
            self.assertEqual(set(result.meta["tuned"]), {"DICE (tuned)", "LINe (tuned)"})
            self.assertEqual(result.meta["n"]["fit"], 300)
            self.assertGreater(result.meta["test_accuracy"], 0.6)
            files = write_report(result, Path(tmp) / "out")
            self.assertEqual([f.suffix for f in files], [".json", ".md", ".png", ".png"])
            data = json.loads(files[0].read_text())
            self.assertEqual(data["records"], result.records)
            self.assertIn("| LINe (tuned) |", files[1].read_text())
            self.assertIn(results_table(result.records), files[1].read_text())
            self.assertIn("| LINe (tuned) |", summary_table(result.records))
