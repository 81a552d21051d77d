"""
The comparison: LINe against the post-hoc detectors of :mod:`pytorch_ood` on the local CIFAR-10
benchmark (:class:`CIFAR10Benchmark`), every detector on the same cached features.

The runner, :func:`compare_detectors`, takes one backbone through one path: split the classifier
into encoder and linear head (:func:`line_plugin.zoo.split_backbone`); take the images of the
fit subset, the validation split and the test sets (:mod:`.cifar10`, :mod:`.synthetic`); extract
their features once (:mod:`line_plugin.features`, cached on disk by :mod:`.features`, see
:func:`cache_dir`); fit every detector on the fit features, tune those with a
``hyperparameter_space`` by :class:`pytorch_ood.utils.GridSearch` on the validation split only
(:mod:`.baselines`), and score the test sets (:func:`metrics`); return a
:class:`ComparisonResult` (:mod:`.report`). The validation split is a held-out part of the
training set (ID) and synthetic OOD images (noise and tile-shuffled training images), none of
them in a test set.

Records carry pytorch-ood's metrics (OOD positive, ``FPR95TPR``: share of ID flagged when 95 % of
the OOD samples are caught) and the ``FPR95`` of the LINe, DICE and ReAct papers
(:func:`fpr_at_id_tpr`: share of OOD accepted when 95 % of the ID samples are kept).
:func:`results_table` renders them; :func:`write_report` writes them as JSON, Markdown tables and
PNG plots.

Modules, in the order of the flow, each importing only those before it: :mod:`.metrics`,
:mod:`.synthetic`, :mod:`.cifar10`, :mod:`.features`, :mod:`.baselines`, :mod:`.report`,
:mod:`.runner`.
"""

from .baselines import (
    BASELINES,
    ablation_detectors,
    check_detector_names,
    detector_names,
    fit_detector,
    make_detectors,
    predict,
    tune,
)
from .cifar10 import CIFAR10Benchmark, Sizes
from .features import cache_dir, cached_features
from .metrics import fpr_at_id_tpr, metrics
from .report import (
    ComparisonResult,
    plot_histograms,
    plot_roc,
    results_table,
    summary_table,
    write_report,
)
from .runner import compare_detectors
from .synthetic import GaussianNoise, Jigsaw, UniformNoise

__all__ = [
    "BASELINES",
    "CIFAR10Benchmark",
    "ComparisonResult",
    "GaussianNoise",
    "Jigsaw",
    "Sizes",
    "UniformNoise",
    "ablation_detectors",
    "cache_dir",
    "cached_features",
    "check_detector_names",
    "compare_detectors",
    "detector_names",
    "fit_detector",
    "fpr_at_id_tpr",
    "make_detectors",
    "metrics",
    "plot_histograms",
    "plot_roc",
    "predict",
    "results_table",
    "summary_table",
    "tune",
    "write_report",
]
