"""
Quality evaluation harness: LINe against the post-hoc detectors of :mod:`pytorch_ood` on the local
CIFAR-10 benchmark (:class:`LocalCIFAR10`), every detector on the same cached features.

The flow of :func:`run_benchmark`: split the classifier into encoder and linear head; extract the
features of the fit subset, the validation split and the test sets once (cached on disk, see
:func:`cache_dir`); fit every detector on the fit features; tune those with a
``hyperparameter_space`` by :class:`pytorch_ood.utils.GridSearch` on the validation split only;
evaluate on the test sets through :meth:`pytorch_ood.benchmark.Benchmark.evaluate`
(:class:`FeatureBenchmark`). The validation split is a held-out part of the training set (ID) and
synthetic OOD images (noise and tile-shuffled training images), none of them in a test set.

Records carry pytorch-ood's metrics (OOD positive, ``FPR95TPR``: share of ID flagged when 95 % of
the OOD samples are caught) and the ``FPR95`` of the LINe, DICE and ReAct papers
(:func:`fpr_at_id_tpr`: share of OOD accepted when 95 % of the ID samples are kept).
:func:`write_report` writes them as JSON, Markdown tables and PNG plots.

Modules, in the order of the flow: :mod:`.metrics`, :mod:`.benchmark` (the data),
:mod:`.features` (extraction and cache), :mod:`.detectors` (on features), :mod:`.runner`,
:mod:`.report`.
"""

from .benchmark import FeatureBenchmark, Jigsaw, LocalCIFAR10, Sizes
from .detectors import TorchKNN, ablation_detectors, fit_detector, make_detectors, predict, tune
from .features import cache_dir, cached_features, compute_features
from .metrics import fpr_at_id_tpr, metrics
from .report import plot_histograms, plot_roc, results_table, summary_table, write_report
from .runner import BenchmarkResult, run_benchmark

__all__ = [
    "BenchmarkResult",
    "FeatureBenchmark",
    "Jigsaw",
    "LocalCIFAR10",
    "Sizes",
    "TorchKNN",
    "ablation_detectors",
    "cache_dir",
    "cached_features",
    "compute_features",
    "fit_detector",
    "fpr_at_id_tpr",
    "make_detectors",
    "metrics",
    "plot_histograms",
    "plot_roc",
    "predict",
    "results_table",
    "run_benchmark",
    "summary_table",
    "tune",
    "write_report",
]
