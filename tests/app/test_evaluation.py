"""
Tests of :mod:`line_plugin.evaluation` on synthetic data: metrics, synthetic OOD sets, detectors
on features, the names check, the feature cache and the results table.
"""

import math
import sys

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from line_plugin.evaluation import (
    GaussianNoise,
    Jigsaw,
    ablation_detectors,
    cached_features,
    check_detector_names,
    compare_detectors,
    detector_names,
    fit_detector,
    fpr_at_id_tpr,
    make_detectors,
    metrics,
    plot_histograms,
    plot_roc,
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


def test_fpr95_hand_example():
    # 20 ID scores 0..19; keeping 95 % (19) of them puts the threshold at 18
    id_scores = torch.arange(20.0)
    ood_scores = torch.tensor([5.0, 18.5, 19.0, 30.0])
    scores = torch.cat([id_scores, ood_scores])
    labels = torch.cat([torch.zeros(20), -torch.ones(4)]).long()
    # papers: keeping 95 % of ID (up to 18) accepts every OOD sample below the next ID
    # sample (19): 5.0 and 18.5 -> 2 / 4
    assert fpr_at_id_tpr(scores, labels) == 0.5
    # pytorch-ood (OOD positive): catching 95 % of OOD needs all 4, threshold 5:
    # ID scores >= 5 are flagged -> 15 / 20
    m = metrics(scores, labels)
    assert m["FPR95TPR"] == pytest.approx(0.75, abs=1e-7)
    assert m["FPR95"] == 0.5
    assert set(m) == {"AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR", "FPR95"}, "metric names"


def test_fpr95_ties_and_extremes():
    labels = torch.tensor([0] * 20 + [-1] * 2)
    # an OOD score tied with the last ID sample kept is accepted
    scores = torch.tensor([float(i) for i in range(20)] + [18.0, 100.0])
    assert fpr_at_id_tpr(scores, labels) == 0.5
    # 10 ID samples: recall 0.9 and 1.0 are equally near 0.95; the higher one is taken
    labels = torch.tensor([0] * 10 + [-1] * 2)
    scores = torch.tensor([float(i) for i in range(10)] + [8.5, 100.0])
    assert fpr_at_id_tpr(scores, labels) == 0.5
    separated = torch.tensor([0.0] * 10 + [1.0, 2.0])
    assert fpr_at_id_tpr(separated, labels) == 0.0
    inverted = torch.tensor([5.0] * 10 + [1.0, 2.0])
    assert fpr_at_id_tpr(inverted, labels) == 1.0


def test_fpr95_matches_papers_code():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n_id, n_ood = rng.integers(20, 300, 2)
        id_s = rng.normal(0, 1, n_id).round(1)  # rounding makes ties
        ood_s = rng.normal(1, 1, n_ood).round(1)
        scores = torch.tensor(np.r_[id_s, ood_s])
        labels = torch.tensor(np.r_[np.zeros(n_id), -np.ones(n_ood)]).long()
        y_true = np.r_[np.ones(n_id), np.zeros(n_ood)]
        expected = _oe_fpr_and_fdr_at_recall(y_true, -np.r_[id_s, ood_s])
        assert fpr_at_id_tpr(scores, labels) == pytest.approx(expected, abs=1e-12), trial


def test_fpr95_errors():
    with pytest.raises(ValueError):
        fpr_at_id_tpr(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError):
        fpr_at_id_tpr(torch.tensor([0.0, math.nan]), torch.tensor([0, -1]))
    with pytest.raises(ValueError):
        fpr_at_id_tpr(torch.zeros(2), torch.tensor([0, -1]), tpr=0)


def test_jigsaw_shuffles_tiles():
    from PIL import Image

    arr = np.arange(32 * 32 * 3, dtype=np.uint32).reshape(32, 32, 3) % 251
    img = Image.fromarray(arr.astype(np.uint8))
    jig = Jigsaw([(img, 3)] * 2, grid=4, seed=0)
    out, label = jig[0]
    assert label == -1
    out = np.asarray(out)
    assert sorted(out.flatten().tolist()) == sorted(np.asarray(img).flatten().tolist())
    assert not (out == np.asarray(img)).all()
    assert (np.asarray(jig[0][0]) == out).all()  # deterministic per item
    assert not (np.asarray(jig[1][0]) == out).all()


def test_noise_is_seeded_per_item():
    noise = GaussianNoise(5, 3, T.ToTensor())
    a = noise[4][0]
    _ = noise[0]
    assert torch.equal(a, noise[4][0])
    assert not torch.equal(a, noise[3][0])
    assert noise[0][1] == -1


def _toy_features(seed: int = 0, n: int = 400, d: int = 32, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(k, d, generator=g) * 2
    y = torch.arange(n) % k
    z = (centers[y] + 0.3 * torch.rand(n, d, generator=g)).relu()
    w = centers - centers.mean(0)
    b = torch.zeros(k)
    ood = (0.8 * torch.rand(n // 2, d, generator=g) + 0.4).relu()
    return z, y, w, b, ood


def _rank_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """AUROC with OOD (label < 0) positive, by counting pairs: ties count half"""
    ood, ind = scores[labels < 0].double(), scores[labels >= 0].double()
    above = (ood[:, None] > ind[None, :]).double().sum()
    ties = (ood[:, None] == ind[None, :]).double().sum()
    return float((above + 0.5 * ties) / (len(ood) * len(ind)))


def test_every_detector_scores_features_and_metrics_agree_with_counting():
    z, y, w, b, ood = _toy_features()
    labels = torch.cat([y[300:], -torch.ones(len(ood), dtype=torch.long)])
    detectors = make_detectors(w, b)
    names = ["MSP", "Energy", "ReAct", "DICE", "ASH", "SCALE", "ViM", "KNN", "Mahalanobis"]
    assert list(detectors) == names + ["LINe"]
    assert detector_names() == names + ["LINe"]
    assert list(make_detectors(w, b, line=False)) == detector_names(line=False)
    for name, det in detectors.items():
        fit_detector(det, z[:300], y[:300])
        scores = torch.cat([predict(det, z[300:]), predict(det, ood)])
        assert scores.shape == (len(labels),), name
        assert torch.isfinite(scores).all(), name
        # pytorch-ood's AUROC, as the harness reports it, is the share of pairs ranked right
        expected = _rank_auroc(scores, labels)
        assert metrics(scores, labels)["AUROC"] == pytest.approx(expected, abs=1e-6), name


def test_ablation_all_off_is_energy():
    z, y, w, b, ood = _toy_features(1)
    dets = ablation_detectors(w, b)
    assert len(dets) == 8
    off = fit_detector(dets["none (energy)"], z, y)
    energy = make_detectors(w, b)["Energy"]
    torch.testing.assert_close(predict(off, ood).float(), predict(energy, ood).float())


def test_make_detectors_builds_only_the_named_ones():
    z, y, w, b, ood = _toy_features(3)
    assert list(make_detectors(w, b, names=["LINe", "MSP"])) == ["MSP", "LINe"]  # table order
    one = make_detectors(w, b, names=["Energy"])
    assert list(one) == ["Energy"]
    expected = predict(make_detectors(w, b)["Energy"], ood)
    assert torch.equal(predict(fit_detector(one["Energy"], z, y), ood), expected)
    with pytest.raises(ValueError, match="unknown detectors"):
        make_detectors(w, b, line=False, names=["LINe"])


def test_knn_without_scikit_learn_names_the_extra(monkeypatch):
    _, _, w, b, _ = _toy_features()
    monkeypatch.setitem(sys.modules, "sklearn.neighbors", None)  # import fails
    with pytest.raises(ImportError, match=r"KNN.*scikit-learn.*line-plugin\[bench\]"):
        make_detectors(w, b, names=["KNN"])
    assert list(make_detectors(w, b, names=["Energy", "LINe"])) == ["Energy", "LINe"]


def test_plots_without_matplotlib_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    scores = {"Energy": {"ID": torch.zeros(3), "dtd": torch.ones(3)}}
    for plot in (plot_roc, plot_histograms):
        with pytest.raises(ImportError, match=r"matplotlib.*line-plugin\[bench\]"):
            plot(scores, tmp_path / "plot.png")


def test_detector_names_are_checked_before_any_work():
    check_detector_names(["Energy", "LINe"])
    with pytest.raises(ValueError, match=r"unknown detectors \['Nope'\]; known: MSP, "):
        check_detector_names(["Energy", "Nope"])
    with pytest.raises(ValueError, match="unknown detectors .'LINe'."):
        check_detector_names(["LINe"], line=False)
    # the runner checks before it loads a model or reads data: no such backbone needed
    with pytest.raises(ValueError, match="unknown detectors"):
        compare_detectors("no such backbone", detectors=["Nope"])


def test_features_are_computed_once(tmp_path):
    calls = []

    def encoder(x):
        calls.append(len(x))
        return x.flatten(1) * 2

    ds = torch.utils.data.TensorDataset(torch.rand(10, 3), torch.arange(10))
    z1, y1 = cached_features(encoder, ds, "toy|abc", tmp_path, progress=False)
    z2, y2 = cached_features(encoder, ds, "toy|abc", tmp_path, progress=False)
    assert sum(calls) == 10
    torch.testing.assert_close(z1, z2)
    assert torch.equal(y1, torch.arange(10))
    cached_features(encoder, ds, "toy|other", tmp_path, progress=False)
    assert sum(calls) == 20
    assert len(list(tmp_path.glob("toy_*.pt"))) == 2


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


def test_markdown_structure_and_values():
    lines = results_table(_RECORDS).splitlines()
    assert lines == [
        "| detector | dtd | mnist | mean |",
        "| --- | --- | --- | --- |",
        "| Energy | 50.0 / 80.0 | 30.0 / 90.0 | 40.0 / 85.0 |",
        "| LINe | 40.0 / 85.0 | 25.0 / 95.0 | 32.5 / 90.0 |",
        "| KNN | 60.0 / 75.0 |  | 60.0 / 75.0 |",
    ]


def test_text_marks_the_best_of_each_column():
    auroc = [line.split() for line in results_table(_RECORDS, ["AUROC"], False, True).split("\n")]
    assert auroc[0] == ["detector", "dtd", "mnist", "mean"]
    assert auroc[2] == ["LINe", "85.0*", "95.0*", "90.0*"]  # highest AUROC
    assert auroc[3] == ["KNN", "75.0", "75.0"]  # empty mnist cell
    fpr = results_table(_RECORDS, ["FPR95"], markdown=False, mark_best=True).splitlines()
    assert fpr[2].split() == ["LINe", "40.0*", "25.0*", "32.5*"]  # lowest FPR95
    assert fpr[1].index("30.0") == fpr[2].index("25.0")  # aligned columns


def test_results_table_errors():
    with pytest.raises(ValueError, match="no records"):
        results_table([])
    with pytest.raises(ValueError, match="AUPR-IN"):
        results_table(_RECORDS, ["AUPR-IN"])
    with pytest.raises(ValueError, match="one metric"):
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


def test_wrapped_datasets_are_told_apart(tmp_path):
    calls = []

    def encoder(x):
        calls.append(len(x))
        return x.flatten(1)

    def jigsaw(path: str, seed: int) -> Jigsaw:
        return Jigsaw(_Images(path), grid=2, seed=seed, transform=T.ToTensor())

    for ds in [jigsaw("a", 0), jigsaw("a", 0), jigsaw("a", 1), jigsaw("bb", 0)]:
        cached_features(encoder, ds, "toy|abc", tmp_path, progress=False)
    assert sum(calls) == 12  # the repeated one was read from the cache
    assert len(list(tmp_path.glob("toy_*.pt"))) == 3
