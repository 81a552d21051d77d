"""
Tests of :mod:`line_plugin.evaluation` on synthetic data: metrics, synthetic OOD sets, detectors
on features, the names check, the feature cache and the results table.
"""

import math
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T

from line_plugin.evaluation import (
    FeatureBenchmark,
    GaussianNoise,
    Jigsaw,
    TorchKNN,
    ablation_detectors,
    cached_features,
    check_detector_names,
    compare_detectors,
    detector_names,
    fit_detector,
    fpr_at_id_tpr,
    make_detectors,
    metrics,
    predict,
    results_table,
)


def _oe_fpr_and_fdr_at_recall(y_true, y_score, recall_level=0.95, pos_label=1.0):
    """fpr_and_fdr_at_recall of the Outlier Exposure code (used by ReAct, DICE and LINe),
    verbatim but for sklearn's stable_cumsum: ID positive, higher score = more ID"""
    y_true = y_true == pos_label
    desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc_score_indices]
    y_true = y_true[desc_score_indices]
    distinct_value_indices = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / (np.sum(np.logical_not(y_true)))


class TestFPR95(unittest.TestCase):
    def test_hand_example(self):
        # 20 ID scores 0..19; keeping 95 % (19) of them puts the threshold at 18
        id_scores = torch.arange(20.0)
        ood_scores = torch.tensor([5.0, 18.5, 19.0, 30.0])
        scores = torch.cat([id_scores, ood_scores])
        labels = torch.cat([torch.zeros(20), -torch.ones(4)]).long()
        # papers: keeping 95 % of ID (up to 18) accepts every OOD sample below the next ID
        # sample (19): 5.0 and 18.5 -> 2 / 4
        self.assertEqual(fpr_at_id_tpr(scores, labels), 0.5)
        # pytorch-ood (OOD positive): catching 95 % of OOD needs all 4, threshold 5:
        # ID scores >= 5 are flagged -> 15 / 20
        m = metrics(scores, labels)
        self.assertAlmostEqual(m["FPR95TPR"], 0.75)
        self.assertEqual(m["FPR95"], 0.5)
        self.assertEqual(
            set(m), {"AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR", "FPR95"}, "metric names"
        )

    def test_ties_and_extremes(self):
        labels = torch.tensor([0] * 20 + [-1] * 2)
        # an OOD score tied with the last ID sample kept is accepted
        scores = torch.tensor([float(i) for i in range(20)] + [18.0, 100.0])
        self.assertEqual(fpr_at_id_tpr(scores, labels), 0.5)
        # 10 ID samples: recall 0.9 and 1.0 are equally near 0.95; the higher one is taken
        labels = torch.tensor([0] * 10 + [-1] * 2)
        scores = torch.tensor([float(i) for i in range(10)] + [8.5, 100.0])
        self.assertEqual(fpr_at_id_tpr(scores, labels), 0.5)
        separated = torch.tensor([0.0] * 10 + [1.0, 2.0])
        self.assertEqual(fpr_at_id_tpr(separated, labels), 0.0)
        inverted = torch.tensor([5.0] * 10 + [1.0, 2.0])
        self.assertEqual(fpr_at_id_tpr(inverted, labels), 1.0)

    def test_matches_papers_code(self):
        rng = np.random.default_rng(0)
        for trial in range(20):
            n_id, n_ood = rng.integers(20, 300, 2)
            id_s = rng.normal(0, 1, n_id).round(1)  # rounding makes ties
            ood_s = rng.normal(1, 1, n_ood).round(1)
            scores = torch.tensor(np.r_[id_s, ood_s])
            labels = torch.tensor(np.r_[np.zeros(n_id), -np.ones(n_ood)]).long()
            y_true = np.r_[np.ones(n_id), np.zeros(n_ood)]
            expected = _oe_fpr_and_fdr_at_recall(y_true, -np.r_[id_s, ood_s])
            self.assertAlmostEqual(fpr_at_id_tpr(scores, labels), expected, msg=trial)

    def test_errors(self):
        with self.assertRaises(ValueError):
            fpr_at_id_tpr(torch.ones(3), torch.zeros(3))
        with self.assertRaises(ValueError):
            fpr_at_id_tpr(torch.tensor([0.0, math.nan]), torch.tensor([0, -1]))
        with self.assertRaises(ValueError):
            fpr_at_id_tpr(torch.zeros(2), torch.tensor([0, -1]), tpr=0)


class TestSyntheticOOD(unittest.TestCase):
    def test_jigsaw_shuffles_tiles(self):
        from PIL import Image

        arr = np.arange(32 * 32 * 3, dtype=np.uint32).reshape(32, 32, 3) % 251
        img = Image.fromarray(arr.astype(np.uint8))
        jig = Jigsaw([(img, 3)] * 2, grid=4, seed=0)
        out, label = jig[0]
        self.assertEqual(label, -1)
        out = np.asarray(out)
        self.assertEqual(
            sorted(out.flatten().tolist()), sorted(np.asarray(img).flatten().tolist())
        )
        self.assertFalse((out == np.asarray(img)).all())
        self.assertTrue((np.asarray(jig[0][0]) == out).all())  # deterministic per item
        self.assertFalse((np.asarray(jig[1][0]) == out).all())

    def test_noise_is_seeded_per_item(self):
        noise = GaussianNoise(5, 3, T.ToTensor())
        a = noise[4][0]
        _ = noise[0]
        self.assertTrue(torch.equal(a, noise[4][0]))
        self.assertFalse(torch.equal(a, noise[3][0]))
        self.assertEqual(noise[0][1], -1)


def _toy_features(seed: int = 0, n: int = 400, d: int = 32, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(k, d, generator=g) * 2
    y = torch.arange(n) % k
    z = (centers[y] + 0.3 * torch.rand(n, d, generator=g)).relu()
    w = centers - centers.mean(0)
    b = torch.zeros(k)
    ood = (0.8 * torch.rand(n // 2, d, generator=g) + 0.4).relu()
    return z, y, w, b, ood


class TestDetectorsOnFeatures(unittest.TestCase):
    def test_every_detector_through_benchmark(self):
        z, y, w, b, ood = _toy_features()
        bench = FeatureBenchmark((z[:300], y[:300]), (z[300:], y[300:]), {"toy": ood})
        labels = torch.cat([y[300:], -torch.ones(len(ood), dtype=torch.long)])
        detectors = make_detectors(w, b)
        names = ["MSP", "Energy", "ReAct", "DICE", "ASH", "SCALE", "ViM", "KNN", "Mahalanobis"]
        self.assertEqual(list(detectors), names + ["LINe"])
        self.assertEqual(detector_names(), names + ["LINe"])
        self.assertEqual(list(make_detectors(w, b, line=False)), detector_names(line=False))
        for name, det in detectors.items():
            fit_detector(det, z[:300], y[:300])
            (result,) = bench.evaluate(det, loader_kwargs={"batch_size": 64})
            scores = torch.cat([predict(det, z[300:]), predict(det, ood)])
            self.assertEqual(scores.shape, (len(labels),), name)
            self.assertTrue(torch.isfinite(scores).all(), name)
            # Benchmark.evaluate and the harness's own scores agree
            self.assertAlmostEqual(result["AUROC"], metrics(scores, labels)["AUROC"], 6, name)

    def test_ablation_all_off_is_energy(self):
        z, y, w, b, ood = _toy_features(1)
        dets = ablation_detectors(w, b)
        self.assertEqual(len(dets), 8)
        off = fit_detector(dets["none (energy)"], z, y)
        energy = make_detectors(w, b)["Energy"]
        torch.testing.assert_close(predict(off, ood).float(), predict(energy, ood).float())

    def test_torch_knn(self):
        z, y, _, _, ood = _toy_features(2)
        knn = TorchKNN(None, k=5).fit_features(z, y)
        d = torch.cdist(torch.nn.functional.normalize(ood, dim=1), knn.bank)
        expected = d.sort(dim=1).values[:, 4]
        torch.testing.assert_close(knn.predict_features(ood), expected, atol=1e-4, rtol=0)
        try:
            from pytorch_ood.detector import KNN

            reference = KNN(None, k=5).fit_features(z, y)
        except ImportError:  # scikit-learn is optional
            return
        torch.testing.assert_close(
            knn.predict_features(ood), reference.predict_features(ood).float(), atol=1e-4, rtol=0
        )

    def test_detector_names_are_checked_before_any_work(self):
        check_detector_names(["Energy", "LINe"])
        with self.assertRaisesRegex(ValueError, r"unknown detectors \['Nope'\]; known: MSP, "):
            check_detector_names(["Energy", "Nope"])
        with self.assertRaisesRegex(ValueError, "unknown detectors .'LINe'."):
            check_detector_names(["LINe"], line=False)
        # the runner checks before it loads a model or reads data: no such backbone needed
        with self.assertRaisesRegex(ValueError, "unknown detectors"):
            compare_detectors("no such backbone", detectors=["Nope"])


class TestFeatureCache(unittest.TestCase):
    def test_computed_once(self):
        calls = []

        def encoder(x):
            calls.append(len(x))
            return x.flatten(1) * 2

        ds = torch.utils.data.TensorDataset(torch.rand(10, 3), torch.arange(10))
        with tempfile.TemporaryDirectory() as tmp:
            z1, y1 = cached_features(encoder, ds, "toy|abc", Path(tmp), progress=False)
            z2, y2 = cached_features(encoder, ds, "toy|abc", Path(tmp), progress=False)
            self.assertEqual(sum(calls), 10)
            torch.testing.assert_close(z1, z2)
            self.assertTrue(torch.equal(y1, torch.arange(10)))
            cached_features(encoder, ds, "toy|other", Path(tmp), progress=False)
            self.assertEqual(sum(calls), 20)
            self.assertEqual(len(list(Path(tmp).glob("toy_*.pt"))), 2)


_RECORDS = [
    {"detector": det, "dataset": ds, "AUROC": auroc, "FPR95": fpr}
    for det, ds, auroc, fpr in [
        ("Energy", "dtd", 0.8, 0.5),
        ("Energy", "mnist", 0.9, 0.3),
        ("LINe", "dtd", 0.85, 0.4),
        ("LINe", "mnist", 0.95, 0.25),
        ("KNN", "dtd", 0.75, 0.6),  # no mnist row: an empty cell, mean over dtd only
    ]
]


class TestResultsTable(unittest.TestCase):
    def test_markdown_structure_and_values(self):
        lines = results_table(_RECORDS).splitlines()
        self.assertEqual(
            lines,
            [
                "| detector | dtd | mnist | mean |",
                "| --- | --- | --- | --- |",
                "| Energy | 50.0 / 80.0 | 30.0 / 90.0 | 40.0 / 85.0 |",
                "| LINe | 40.0 / 85.0 | 25.0 / 95.0 | 32.5 / 90.0 |",
                "| KNN | 60.0 / 75.0 |  | 60.0 / 75.0 |",
            ],
        )

    def test_text_marks_the_best_of_each_column(self):
        auroc = [
            line.split() for line in results_table(_RECORDS, ["AUROC"], False, True).split("\n")
        ]
        self.assertEqual(auroc[0], ["detector", "dtd", "mnist", "mean"])
        self.assertEqual(auroc[2], ["LINe", "85.0*", "95.0*", "90.0*"])  # highest AUROC
        self.assertEqual(auroc[3], ["KNN", "75.0", "75.0"])  # empty mnist cell
        fpr = results_table(_RECORDS, ["FPR95"], markdown=False, mark_best=True).splitlines()
        self.assertEqual(fpr[2].split(), ["LINe", "40.0*", "25.0*", "32.5*"])  # lowest FPR95
        self.assertEqual(fpr[1].index("30.0"), fpr[2].index("25.0"))  # aligned columns

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "no records"):
            results_table([])
        with self.assertRaisesRegex(ValueError, "AUPR-IN"):
            results_table(_RECORDS, ["AUPR-IN"])
        with self.assertRaisesRegex(ValueError, "one metric"):
            results_table(_RECORDS, mark_best=True)


class _Images(torch.utils.data.Dataset):
    # four 8 x 8 RGB images, one pattern per ``path``
    def __init__(self, path: str):
        self.path = path

    def __len__(self) -> int:
        return 4

    def __getitem__(self, item: int):
        from PIL import Image

        value = (len(self.path) * 37 + item * 11) % 256
        return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)), 0


class TestCacheKeys(unittest.TestCase):
    def test_wrapped_datasets_are_told_apart(self):
        calls = []

        def encoder(x):
            calls.append(len(x))
            return x.flatten(1)

        def jigsaw(path: str, seed: int) -> Jigsaw:
            return Jigsaw(_Images(path), grid=2, seed=seed, transform=T.ToTensor())

        with tempfile.TemporaryDirectory() as tmp:
            for ds in [jigsaw("a", 0), jigsaw("a", 0), jigsaw("a", 1), jigsaw("bb", 0)]:
                cached_features(encoder, ds, "toy|abc", Path(tmp), progress=False)
            self.assertEqual(sum(calls), 12)  # the repeated one was read from the cache
            self.assertEqual(len(list(Path(tmp).glob("toy_*.pt"))), 3)
