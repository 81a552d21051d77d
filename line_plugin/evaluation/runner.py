"""
:func:`compare_detectors`, the runner of the comparison: LINe and pytorch-ood's baselines fitted,
tuned and evaluated on one backbone. Its data path runs one way: the images
(:class:`~.cifar10.CIFAR10Benchmark`), their features (:mod:`.features`), the detectors
(:mod:`.baselines`) and the result (:class:`~.report.ComparisonResult`, rendered by
:mod:`.report`).
"""

import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from pytorch_ood.api import Detector
from torch import Tensor
from torch.utils.data import Dataset
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
from .features import FeatureBenchmark, cached_features, model_fingerprint
from .metrics import fpr_at_id_tpr
from .report import ComparisonResult


def _evaluate(
    bench: FeatureBenchmark, name: str, detector: Detector, backbone: str, batch_size: int
) -> Tuple[List[Dict], Dict[str, Tensor]]:
    results = bench.evaluate(detector, loader_kwargs={"batch_size": batch_size})
    z_id, _ = bench.test_id
    scores = {"ID": predict(detector, z_id)}
    records = []
    for result in results:
        dataset = result["Dataset"]
        scores[dataset] = predict(detector, bench.ood[dataset])
        labels = torch.cat([torch.zeros(len(z_id)), -torch.ones(len(bench.ood[dataset]))])
        fpr95 = fpr_at_id_tpr(torch.cat([scores["ID"], scores[dataset]]), labels)
        record = {"backbone": backbone, "detector": name, "dataset": dataset}
        record.update({k: float(result[k]) for k in ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR95TPR")})
        record["FPR95"] = fpr95
        records.append(record)
    return records, scores


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
    """
    start = time.perf_counter()
    if detectors is not None:  # before the minutes of feature extraction
        check_detector_names(detectors, line)
    sizes = sizes or Sizes()
    zoo = load_model(backbone) if isinstance(backbone, str) else backbone
    name = zoo.name
    if batch_size is None:
        batch_size = 16 if str(device) == "cpu" else 256
    encoder, w, b = split_backbone(zoo)
    zoo.model.to(device)
    key = f"{name}|{model_fingerprint(zoo.model)}"
    images = CIFAR10Benchmark(zoo.transform, sizes, ood, data_dir)

    timings: Dict[str, float] = {}

    def features(what: str, dataset: Dataset) -> Tuple[Tensor, Tensor]:
        t0 = time.perf_counter()
        out = cached_features(
            encoder,
            dataset,
            key,
            features_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            desc=f"{name}: {what}",
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
        ood_z = {
            n: features(n, ds)[0] for n, ds in zip(images.ood_names, images.test_sets(known=False))
        }
    val = (torch.cat([z_vi, z_vo]), torch.cat([y_vi, torch.full((len(z_vo),), -1)]))
    bench = FeatureBenchmark(fit, test_id, ood_z)
    accuracy = float(((test_id[0] @ w.T + b).argmax(1) == test_id[1]).double().mean())

    base = make_detectors(w, b, line=line)
    if detectors is not None:
        base = {k: v for k, v in base.items() if k in detectors}
    result = ComparisonResult()
    tuned_params: Dict[str, Dict] = {}
    fit_times: Dict[str, float] = {}
    names = list(base)
    for det_name in tqdm(names, desc=f"{name}: detectors", disable=not progress, leave=False):
        label = "LINe (paper)" if det_name == "LINe" else det_name
        variants = [(label, base[det_name], None)]
        space = space_for(base[det_name], w.shape[1], len(fit[0]))
        if spaces and det_name in spaces:
            space = spaces[det_name]
        if tuned and space:
            fresh = make_detectors(w, b, line=line)[det_name]
            variants.append((f"{det_name} (tuned)", fresh, space))
        for label, detector, search_space in variants:
            t0 = time.perf_counter()
            if search_space is None:
                fit_detector(detector, *fit)
            else:
                search = tune(detector, fit, val, search_space)
                tuned_params[label] = {
                    "params": search.best_params_,
                    "val_AUROC": search.best_score_,
                }
            fit_times[label] = round(time.perf_counter() - t0, 2)
            records, scores = _evaluate(bench, label, detector, name, 4096)
            result.records += records
            result.scores[label] = scores

    auto_choice = None
    if line and (detectors is None or "LINe" in detectors):  # preset="auto", on ID data only
        with torch.no_grad():
            z_ao, _ = features("auto outliers", AutoOutliers(val_id, seed=sizes.seed))
        t0 = time.perf_counter()
        detector = fit_auto_on_features(w, b, fit, z_vi, z_ao, seed=sizes.seed)
        fit_times["LINe (auto)"] = round(time.perf_counter() - t0, 2)
        auto_choice = detector.auto_choice.metadata()
        records, scores = _evaluate(bench, "LINe (auto)", detector, name, 4096)
        result.records += records
        result.scores["LINe (auto)"] = scores

    if ablation is None:
        ablation = line and name.startswith("densenet_bc100")
    if ablation and line:
        for label, detector in ablation_detectors(w, b).items():
            fit_detector(detector, *fit)
            records, _ = _evaluate(bench, f"LINe [{label}]", detector, name, 4096)
            result.ablation += records

    timings["features total"] = round(sum(timings.values()), 2)
    timings["detectors"] = fit_times
    timings["total"] = round(time.perf_counter() - start, 2)
    result.meta = {
        "backbone": name,
        "arch": zoo.spec.get("arch"),
        "num_features": int(w.shape[1]),
        "test_accuracy": accuracy,
        "sizes": asdict(sizes),
        "validation": "held-out training images (ID); Gaussian and uniform noise, jigsaw (OOD)",
        "n": {
            "fit": len(fit[0]),
            "val_id": len(z_vi),
            "val_ood": len(z_vo),
            "test_id": len(test_id[0]),
            **{k: len(v) for k, v in ood_z.items()},
        },
        "tuned": tuned_params,
        "auto": auto_choice,
        "timings_s": timings,
        "threads": torch.get_num_threads(),
        "versions": _versions(),
    }
    return result


def _versions() -> Dict[str, str]:
    import pytorch_ood
    import timm

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "pytorch-ood": pytorch_ood.__version__,
    }
