"""
:func:`compare_detectors`, the runner of the comparison: LINe and pytorch-ood's baselines fitted,
tuned and evaluated on one backbone. Its data path runs one way: the images
(:class:`~.cifar10.CIFAR10Benchmark`), their features (:mod:`.features`), the detectors
(:mod:`.baselines`) and the result (:class:`~.report.ComparisonResult`, rendered by
:mod:`.report`).
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from pytorch_ood.api import Detector
from torch import Tensor
from tqdm.auto import tqdm

from ..data import OOD_SETS
from ..zoo import ZooModel, load_model, split_backbone
from .auto_row import AutoOutliers, fit_auto_on_features
from .baselines import (
    ablation_detectors,
    check_detector_names,
    fit_detector,
    make_detectors,
    predict,
    space_for,
    tune,
)
from .cifar10 import CIFAR10Benchmark, Sizes
from .features import cached_features, model_fingerprint
from .metrics import metrics
from .report import ComparisonResult


@dataclass
class _Features:
    """the cached features of one backbone on every split, and its head"""

    fit: Tuple[Tensor, Tensor]
    val: Tuple[Tensor, Tensor]  # validation ID and OOD (labelled -1), concatenated
    test_id: Tuple[Tensor, Tensor]
    ood: Dict[str, Tensor]
    w: Tensor
    b: Tensor
    counts: Dict[str, int]
    timings: Dict[str, float]
    # preset="auto"'s inputs: the held-out ID features and their synthetic outliers' features
    auto: Optional[Tuple[Tensor, Tensor]] = None


def compare_detectors(
    backbone: Union[str, ZooModel] = "densenet_bc100",
    sizes: Optional[Sizes] = None,
    detectors: Optional[Sequence[str]] = None,
    line: bool = True,
    tuned: bool = True,
    spaces: Optional[Dict[str, Dict[str, list]]] = None,
    ablation: Optional[bool] = None,
    ood: Sequence[str] = tuple(OOD_SETS),
    data_dir: Optional[Union[str, Path]] = None,
    features_dir: Optional[Union[str, Path]] = None,
    batch_size: Optional[int] = None,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> ComparisonResult:
    """
    Fit, tune and evaluate every detector on one backbone (see the module docstring).

    :param backbone: a name of :data:`line_plugin.zoo.MODELS` or a loaded :class:`ZooModel`
    :param sizes: subset sizes (default :class:`Sizes`: 10,000 fit images, 2,000 ID test images,
        at most 2,000 per OOD set, a validation split of 1,000 + 1,000)
    :param detectors: names to keep (default: all of :func:`make_detectors`)
    :param line: include LINe (needs :mod:`line_plugin.detector`)
    :param tuned: add a ``"<name> (tuned)"`` copy of each detector with a hyperparameter space
    :param spaces: search spaces by detector name, replacing the detectors' own
    :param ablation: run the LINe ablation; default: for the DenseNet-BC-100 backbones
    :param ood: OOD test sets
    :param data_dir: data folder
    :param features_dir: feature cache folder (default ``cache_dir() / "features"``)
    :param batch_size: batch size of the feature extraction; default 16 on a CPU (fastest
        there), 256 on other devices
    :param num_workers: data loader workers of the feature extraction
    :param device: device of the feature extraction (the model is moved there); detectors
        are fitted and evaluated on the CPU, on the cached features
    :param progress: show progress bars
    :return: records, ablation records, test scores and metadata
    :raises ValueError: on an unknown detector name, before any model is loaded
    """
    start = time.perf_counter()
    if detectors is not None:  # before the minutes of feature extraction
        check_detector_names(detectors, line)
    sizes = sizes or Sizes()
    zoo = load_model(backbone) if isinstance(backbone, str) else backbone
    if batch_size is None:
        batch_size = 16 if str(device) == "cpu" else 256
    images = CIFAR10Benchmark(zoo.transform, sizes, ood, data_dir)
    auto = line and (detectors is None or "LINe" in detectors)
    features = _extract(
        zoo, images, features_dir, batch_size, num_workers, device, progress, auto, sizes.seed
    )
    result = ComparisonResult()
    tuned_params, fit_times = _run_detectors(
        result, features, zoo.name, detectors, line, tuned, spaces, progress
    )
    auto_choice = _run_auto(result, features, zoo.name, sizes.seed, fit_times) if auto else None
    if ablation is None:
        ablation = line and zoo.name.startswith("densenet_bc100")
    if ablation and line:
        for label, detector in ablation_detectors(features.w, features.b).items():
            fit_detector(detector, *features.fit)
            records, _ = _evaluate(features, f"LINe [{label}]", detector, zoo.name)
            result.ablation += records
    timings = dict(features.timings)
    timings["features total"] = round(sum(timings.values()), 2)
    timings["detectors"] = fit_times
    timings["total"] = round(time.perf_counter() - start, 2)
    result.meta = _meta(zoo, sizes, features, tuned_params, timings)
    result.meta["auto"] = auto_choice
    return result


def _extract(
    zoo: ZooModel,
    images: CIFAR10Benchmark,
    features_dir: Optional[Union[str, Path]],
    batch_size: int,
    num_workers: int,
    device: str,
    progress: bool,
    auto: bool = False,
    seed: int = 0,
) -> _Features:
    """the features of every split, read from the cache or extracted once, and the head;
    with ``auto``, also of the synthetic outliers of the validation split's ID images"""
    encoder, w, b = split_backbone(zoo)
    zoo.model.to(device)
    key = f"{zoo.name}|{model_fingerprint(zoo.model)}"
    timings: Dict[str, float] = {}

    def features(what: str, dataset) -> Tuple[Tensor, Tensor]:
        t0 = time.perf_counter()
        out = cached_features(
            encoder,
            dataset,
            key,
            features_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            desc=f"{zoo.name}: {what}",
            progress=progress,
        )
        timings[f"features {what}"] = round(time.perf_counter() - t0, 2)
        return out

    with torch.no_grad():
        fit = features("fit", images.train_set())
        val_id, val_ood = images.validation_sets()
        z_vi, y_vi = features("val ID", val_id)
        z_vo, _ = features("val OOD", val_ood)
        test_id = features("test ID", images.test_sets(known=True, unknown=False)[0])
        ood_sets = zip(images.ood_names, images.test_sets(known=False))
        ood = {name: features(name, dataset)[0] for name, dataset in ood_sets}
        z_ao = features("auto outliers", AutoOutliers(val_id, seed=seed))[0] if auto else None
    val = (torch.cat([z_vi, z_vo]), torch.cat([y_vi, torch.full((len(z_vo),), -1)]))
    counts = {"fit": len(fit[0]), "val_id": len(z_vi), "val_ood": len(z_vo)}
    counts["test_id"] = len(test_id[0])
    counts.update({name: len(z) for name, z in ood.items()})
    auto_inputs = None if z_ao is None else (z_vi, z_ao)
    return _Features(fit, val, test_id, ood, w, b, counts, timings, auto_inputs)


def _run_detectors(
    result: ComparisonResult,
    features: _Features,
    backbone: str,
    names: Optional[Sequence[str]],
    line: bool,
    tuned: bool,
    spaces: Optional[Dict[str, Dict[str, list]]],
    progress: bool,
) -> Tuple[Dict[str, Dict], Dict[str, float]]:
    """
    Fits each detector at its own settings and, with ``tuned``, a fresh copy tuned on the
    validation split; adds their records and scores to ``result``.

    :return: the tuned hyperparameters and the fit times, by label
    """
    w, b = features.w, features.b
    base = make_detectors(w, b, line=line, names=names)
    tuned_params: Dict[str, Dict] = {}
    fit_times: Dict[str, float] = {}
    for name in tqdm(list(base), desc=f"{backbone}: detectors", disable=not progress, leave=False):
        variants = [("LINe (paper)" if name == "LINe" else name, base[name], None)]
        space = space_for(base[name], w.shape[1], len(features.fit[0]))
        if spaces and name in spaces:
            space = spaces[name]
        if tuned and space:
            fresh = make_detectors(w, b, line=line, names=[name])[name]
            variants.append((f"{name} (tuned)", fresh, space))
        for label, detector, search_space in variants:
            t0 = time.perf_counter()
            if search_space is None:
                fit_detector(detector, *features.fit)
            else:
                search = tune(detector, features.fit, features.val, search_space)
                tuned_params[label] = {
                    "params": search.best_params_,
                    "val_AUROC": search.best_score_,
                }
            fit_times[label] = round(time.perf_counter() - t0, 2)
            records, scores = _evaluate(features, label, detector, backbone)
            result.records += records
            result.scores[label] = scores
    return tuned_params, fit_times


def _run_auto(
    result: ComparisonResult,
    features: _Features,
    backbone: str,
    seed: int,
    fit_times: Dict[str, float],
) -> Dict:
    """
    The ``LINe (auto)`` row: LINe fitted on the fit features, its hyperparameters chosen by
    ``preset="auto"``'s rule on the held-out ID features against their synthetic outliers (no
    test image is seen); adds its records and scores to ``result``.

    :return: the choice's metadata
    """
    t0 = time.perf_counter()
    detector = fit_auto_on_features(features.w, features.b, features.fit, *features.auto, seed)
    fit_times["LINe (auto)"] = round(time.perf_counter() - t0, 2)
    records, scores = _evaluate(features, "LINe (auto)", detector, backbone)
    result.records += records
    result.scores["LINe (auto)"] = scores
    return detector.auto_choice.metadata()


def _evaluate(
    features: _Features, label: str, detector: Detector, backbone: str
) -> Tuple[List[Dict], Dict[str, Tensor]]:
    """the records (:func:`~.metrics.metrics`) and test scores of a fitted detector"""
    z_id, _ = features.test_id
    scores = {"ID": predict(detector, z_id)}
    records = []
    for dataset, z_ood in features.ood.items():
        scores[dataset] = predict(detector, z_ood)
        labels = torch.cat([torch.zeros(len(z_id)), -torch.ones(len(z_ood))])
        record = {"backbone": backbone, "detector": label, "dataset": dataset}
        record.update(metrics(torch.cat([scores["ID"], scores[dataset]]), labels))
        records.append(record)
    return records, scores


def _meta(
    zoo: ZooModel,
    sizes: Sizes,
    features: _Features,
    tuned_params: Dict[str, Dict],
    timings: Dict,
) -> Dict:
    """what the comparison ran on: backbone, accuracy, sizes, tuned settings, timings"""
    (z, y), w, b = features.test_id, features.w, features.b
    return {
        "backbone": zoo.name,
        "arch": zoo.spec.get("arch"),
        "num_features": int(w.shape[1]),
        "test_accuracy": float(((z @ w.T + b).argmax(1) == y).double().mean()),
        "sizes": asdict(sizes),
        "validation": "held-out training images (ID); Gaussian and uniform noise, jigsaw (OOD)",
        "n": features.counts,
        "tuned": tuned_params,
        "timings_s": timings,
        "threads": torch.get_num_threads(),
        "versions": _versions(),
    }


def _versions() -> Dict[str, str]:
    import pytorch_ood
    import timm

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "pytorch-ood": pytorch_ood.__version__,
    }
