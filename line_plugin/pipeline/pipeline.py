"""
:class:`Pipeline`: images to decisions in one object, in Python as on the command line (``line-ood
fit`` and ``line-ood score`` are thin shells over it).
"""

import os
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from torch import nn
from torch.utils.data import DataLoader
from typing_extensions import Self

from .. import data, features
from ..adapter import Split
from ..batching import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from ..calibration import DEFAULT_TPR, check_threshold, check_tpr
from ..plugin import LINe
from ..plugin.presets import resolve_preset
from . import file, scoring, sources
from .backbone import Backbone, load_backbone
from .metadata import Metadata
from .records import Row, ScoredBatch, ScoreResult, Skipped, UnreadableImageError
from .threshold import FOLDER, TRAINING, Calibration

PathLike = Union[str, os.PathLike]


class Pipeline:
    """
    A backbone, its verified split, the fitted :class:`line_plugin.LINe`, a typed calibration,
    the class names, ``auto``'s choice and the metadata, with the whole job: fit, calibrate,
    score into rows, report, save and load.

    .. rubric:: Example

    .. code-block:: python

        from line_plugin import Pipeline

        pipe = Pipeline.from_backbone("resnet18").fit("train/", calibration=0)
        pipe.calibrate("unseen/")               # the threshold: 95 % of these images kept
        result = pipe.score("images/")          # rows: file, score, class, ood
        pipe.save("line.pt")                    # one file; Pipeline.load("line.pt")

    :param backbone: the classifier with its transform and split
    :param detector: the fitted detector, or ``None`` before :meth:`fit`
    :param metadata: what the file says beside the detector's state
    :param path: the file the pipeline was loaded from or last saved to
    :param classes: class names by label given for the backbone, which :meth:`fit` keeps
        (default: those of the training data)
    """

    def __init__(
        self,
        backbone: Backbone,
        detector: Optional[LINe] = None,
        metadata: Optional[Metadata] = None,
        path: Optional[str] = None,
        classes: Optional[Sequence[str]] = None,
    ):
        self.backbone = backbone
        self.detector = detector
        self._classes = None if classes is None else [str(c) for c in classes]
        if metadata is None:
            metadata = Metadata(backbone=backbone.name, classes=self._classes)
        self.metadata = metadata
        self.path = path

    @classmethod
    def from_backbone(
        cls,
        backbone: Union[str, nn.Module],
        transform: Optional[Callable] = None,
        classes: Optional[Sequence[str]] = None,
        *,
        name: Optional[str] = None,
        models_dir: Optional[PathLike] = None,
        device: str = "cpu",
    ) -> "Pipeline":
        """
        A pipeline to fit, for a backbone.

        :param backbone: a shared model (``"resnet18"``, :data:`line_plugin.zoo.MODELS`),
            ``"ARCH:CHECKPOINT"`` (a timm model name or ``densenet_bc100``, and a checkpoint
            file), or any classifier ``nn.Module`` (split by :func:`line_plugin.split_model`)
        :param transform: PIL image to input tensor, of a fixed size (default: a named model's
            own; for a module, from timm's data config, :func:`line_plugin.default_transform`)
        :param classes: the class names by label (default: those of the training data)
        :param name: for a module: the name saved in the file (default: its class name)
        :param models_dir: the shared models folder (default: ``$LINE_OOD_MODELS`` or
            ``../shared/models``)
        :param device: torch device to run on
        :return: the pipeline, not fitted
        :raises ValueError: for an unknown name, a checkpoint that does not fit, or a model
            without an exact linear head
        :raises FileNotFoundError: for a missing checkpoint or models folder
        """
        return cls(load_backbone(backbone, transform, name, models_dir, device), classes=classes)

    # -- what it holds ---------------------------------------------------------------------------

    @property
    def split(self) -> Split:
        """the backbone as encoder and linear head (:class:`line_plugin.Split`), verified"""
        return self.backbone.split

    @property
    def classes(self) -> Optional[List[str]]:
        """the class names by label, where there is one per output of the head"""
        classes = self.metadata.classes
        return classes if classes is not None and len(classes) == len(self.split.weight) else None

    @property
    def calibration(self) -> Optional[Calibration]:
        """the decision threshold and where it came from, once calibrated"""
        return self.metadata.calibration

    @property
    def threshold(self) -> Optional[float]:
        """the calibrated threshold: images scoring above it are flagged; ``None`` without"""
        return None if self.calibration is None else self.calibration.threshold

    @property
    def auto(self) -> Optional[Dict[str, Any]]:
        """what preset ``auto`` chose (:meth:`~line_plugin.plugin.auto.AutoChoice.metadata`)"""
        return self.metadata.auto

    def __repr__(self) -> str:
        fitted = "not fitted"
        if self.detector is not None:
            hp = self.detector.hyperparameters
            fitted = f"p_a={hp['p_a']:g}, p_w={hp['p_w']:g}, clip={hp['clip']}"
        calibrated = "" if self.calibration is None else f", {self.calibration.summary()}"
        return f"Pipeline({self.backbone.name!r}, {fitted}{calibrated})"

    # -- fit and calibrate -----------------------------------------------------------------------

    def fit(
        self,
        source: sources.Training,
        preset: Optional[str] = None,
        *,
        fit_samples: Optional[int] = None,
        calibration: Optional[float] = None,
        tpr: float = DEFAULT_TPR,
        seed: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
        progress: bool = True,
        **hyperparameters,
    ) -> Self:
        """
        Fit LINe on training data and, unless ``calibration`` is 0, set the threshold on a
        held-out share of it (stratified by class; the backbone was trained on these images, so
        that new ones may be flagged more often than promised: :meth:`calibrate` on unseen
        images instead).

        :param source: an image folder (one sub-folder per class), torchvision's CIFAR-10
            folder or a JPEG pack folder; a dataset of ``(image tensor, label)``; or a data
            loader of such batches, fitted on as it is (under :mod:`torch.distributed`, each
            process passes its own shard)
        :param preset: ``"auto"`` (the default without hyperparameters: the setting is chosen
            from the training data, :mod:`line_plugin.plugin.auto`) or a paper preset
            (``"cifar10"``, ``"cifar100"``, ``"imagenet"``)
        :param fit_samples: a class-balanced subset of this many training images, held-out
            ones included (default: all)
        :param calibration: share of the training images held out for the threshold (default:
            :data:`line_plugin.calibration.DEFAULT_FRACTION` of a folder or dataset; none of a
            loader); 0: none
        :param tpr: the threshold keeps this share of the calibration images
        :param seed: seed of the subset and of the held-out images
        :param batch_size: images per batch (of a folder or dataset)
        :param workers: data-loading processes (of a folder or dataset)
        :param progress: show progress bars where stderr is a terminal
        :param hyperparameters: ``p_a``, ``p_w``, ``clip``, ``clip_quantile``, overriding the
            preset's
        :return: the pipeline, fitted
        :raises ValueError: for bad settings or training data
        :raises FileNotFoundError: for a missing folder
        """
        preset = resolve_preset(preset, hyperparameters)
        check_tpr(tpr)
        detector = _detector(self.split, preset, **hyperparameters).to(self.backbone.device)
        training = sources.training_data(source, self.backbone.transform)
        fraction = sources.held_out_share(training, calibration)
        held_out = None
        if isinstance(training, DataLoader):
            if fit_samples is not None:
                raise ValueError(
                    "fit_samples takes a subset of a folder or dataset: a data loader is read "
                    "as it is"
                )
            loader = training
        else:
            if fit_samples is not None:
                training = data.subset(training, fit_samples, seed=seed)
            fit_set, held_out = sources.calibration_sets(training, fraction, seed)
            loader = DataLoader(fit_set, batch_size=batch_size, num_workers=workers)
        detector.fit(loader, progress=progress)
        choice = detector.auto_choice
        self.detector = detector
        self.metadata = Metadata(
            backbone=self.backbone.name,
            classes=self._classes or sources.class_names(training),
            source=sources.describe(source, training),
            fit_images=int(detector.class_counts.sum()),  # less what auto held out
            preset=preset,
            auto=None if choice is None else choice.metadata(),
        )
        if held_out is not None:
            options = dict(batch_size=batch_size, workers=workers, progress=progress)
            self.metadata.calibration = self._calibration(held_out, tpr, TRAINING, None, options)
        return self

    def calibrate(
        self,
        images: sources.Images,
        tpr: float = DEFAULT_TPR,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
        progress: bool = True,
    ) -> Self:
        """
        Set the threshold on in-distribution images that neither the backbone nor the fit has
        seen (a validation set): the smallest of their scores with at least ``tpr`` of them at
        or below it (:func:`line_plugin.calibration.threshold_at_tpr`). With :math:`n` such
        images, exchangeable with new in-distribution images, the expected share of new ones
        flagged is at most :math:`1 - \\mathrm{tpr} + 1 / (n + 1)`.

        :param images: a folder (searched recursively; labels are not needed) or image file,
            several, a dataset of ``(image tensor, label)`` or a loader of such batches
        :param tpr: the share of the images to keep
        :param batch_size: images per batch
        :param workers: data-loading processes
        :param progress: show a progress bar where stderr is a terminal
        :return: the pipeline, calibrated
        :raises ValueError: if an image cannot be read, or for a bad ``tpr``
        """
        self._check_fitted()
        check_tpr(tpr)
        folder = str(images) if isinstance(images, (str, os.PathLike)) else None
        items = sources.images_read(images, self.backbone.transform, self.backbone.input_size)
        options = dict(batch_size=batch_size, workers=workers, progress=progress)
        self.metadata.calibration = self._calibration(items, tpr, FOLDER, folder, options)
        return self

    def _calibration(self, items, tpr: float, source: str, folder, options) -> Calibration:
        scores: List[float] = []
        try:
            for batch in self._rows(items, None, True, "calibration", options):
                scores += [row.score for row in batch.rows]
        except UnreadableImageError as e:
            file, error = e.skipped
            raise ValueError(f"cannot read calibration image {file!r}: {error}") from None
        return Calibration.of_scores(scores, tpr, source, folder)

    # -- score -----------------------------------------------------------------------------------

    def score_batches(
        self,
        images: sources.Images,
        threshold: Optional[float] = None,
        *,
        strict: bool = False,
        exclude: Collection[str] = (),
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
        progress: bool = True,
    ) -> Iterator[ScoredBatch]:
        """
        Score images batch by batch, for callers that use each batch as it comes (``line-ood
        score`` writes rows as batches finish); :meth:`score` collects them.

        :param images: files and folders (searched recursively for images); or a dataset of
            ``(image tensor, label)`` or a loader of such batches, whose rows are named by
            position
        :param threshold: flag scores above it (default: the calibrated threshold; without
            one, rows carry no decision)
        :param strict: raise at the first file that cannot be read, instead of skipping it
        :param exclude: names of files not to score (the rows of an interrupted run)
        :param batch_size: images per batch
        :param workers: data-loading processes
        :param progress: show a progress bar where stderr is a terminal
        :return: per batch, a :class:`~.records.ScoredBatch`: the rows of the images read, in
            their order, and the files skipped
        :raises FileNotFoundError: for a missing path (at once)
        :raises ValueError: if no image is found, for a threshold that is no finite number (at
            once), or with ``strict`` for a file that cannot be read
            (:class:`~.records.UnreadableImageError`)
        """
        self._check_fitted()
        value = self.decision_threshold(threshold)
        transform, size = self.backbone.transform, self.backbone.input_size
        items = sources.images_read(images, transform, size, exclude)
        options = dict(batch_size=batch_size, workers=workers, progress=progress)
        return self._rows(items, value, strict, "score", options)

    def _rows(self, items, threshold, strict: bool, desc: str, options) -> Iterator[ScoredBatch]:
        device = self.backbone.device
        batches = features.feature_batches(
            self.split.encoder,
            items,
            options["batch_size"],
            options["workers"],
            device,
            desc,
            options["progress"],
        )
        scored = scoring.scored(self.detector, self.split, batches, device)
        return scoring.rows(scored, items, self.classes, threshold, strict)

    def score(
        self,
        images: sources.Images,
        threshold: Optional[float] = None,
        *,
        strict: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
        progress: bool = True,
    ) -> ScoreResult:
        """
        Score images: :meth:`score_batches`, collected.

        :return: the rows, the files skipped and the threshold with where it came from
        """
        rows: List[Row] = []
        skipped: List[Skipped] = []
        options = dict(batch_size=batch_size, workers=workers, progress=progress)
        for batch in self.score_batches(images, threshold, strict=strict, **options):
            rows += batch.rows
            skipped += batch.skipped
        return self.result(rows, skipped, threshold)

    def result(
        self, rows: List[Row], skipped: List[Skipped], threshold: Optional[float] = None
    ) -> ScoreResult:
        """
        :param rows: rows scored by this pipeline (with those of an interrupted run)
        :param skipped: the files skipped
        :param threshold: the threshold given to :meth:`score_batches`, if any
        :return: the result of the run
        """
        value, given = self._threshold(threshold)
        calibration, path = self.calibration, self.path
        return ScoreResult(rows, skipped, value, given, calibration, self.backbone.name, path)

    def decision_threshold(self, threshold: Optional[float] = None) -> Optional[float]:
        """
        :param threshold: a threshold given for a scoring run, or ``None``
        :return: the threshold the run flags by: the one given, else the calibrated one, else
            ``None`` (no decisions)
        :raises ValueError: if the one given is not a finite number
        """
        return self._threshold(threshold)[0]

    def _threshold(self, threshold: Optional[float]) -> Tuple[Optional[float], bool]:
        # the threshold of a scoring run and whether it was given
        if threshold is not None:
            return check_threshold(threshold), True
        return self.threshold, False

    def report(self, path: PathLike, result: ScoreResult) -> int:
        """
        Write one self-contained HTML page of a scoring run (:mod:`line_plugin.report_html`):
        the summary, the histograms of the scores and the calibration scores, and the images
        most out-of-distribution, nearest the threshold and most in-distribution. Needs
        matplotlib.

        :param path: the page to write
        :param result: of :meth:`score`
        :return: its size in bytes
        """
        from ..report_html import write_report

        return write_report(path, result)

    # -- files -----------------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """
        Save the fitted detector and the metadata to one file, atomically (:mod:`.file`).

        :raises RequiresFittingException: before :meth:`fit`
        """
        self._check_fitted()
        file.write(path, self.detector, self.metadata)
        self.path = str(path)

    @classmethod
    def load(
        cls,
        path: Union[PathLike, file.PipelineFile],
        backbone: Optional[Union[str, nn.Module]] = None,
        *,
        transform: Optional[Callable] = None,
        models_dir: Optional[PathLike] = None,
        device: str = "cpu",
    ) -> "Pipeline":
        """
        Load a pipeline's file, or a state file of ``line-ood fit`` or :meth:`LINe.save` of any
        version (0.1 on): the same scores as when it was saved.

        :param path: the file (or one already read, :func:`.file.read`)
        :param backbone: the backbone the file was fitted for, where it names none or to load
            another copy of it: a name (checked against the file's for shared models) or a
            module
        :param transform: PIL image to input tensor (default: as for :meth:`from_backbone`)
        :param models_dir: the shared models folder
        :param device: torch device to run on
        :return: the pipeline
        :raises FileNotFoundError: for a missing file
        :raises ValueError: for a file holding no LINe state, a backbone that is not the
            file's, or a file that names no backbone when none is given
        """
        saved = path if isinstance(path, file.PipelineFile) else file.read(path)
        if isinstance(backbone, nn.Module):
            name = saved.metadata.backbone
            loaded = load_backbone(backbone, transform, name, device=device)
        else:
            name = saved.backbone_name(backbone)
            loaded = load_backbone(name, transform, models_dir=models_dir, device=device)
        detector = LINe(*loaded.split).load_state_dict(saved.state).to(device)
        return cls(loaded, detector, saved.metadata, saved.path)

    def _check_fitted(self) -> None:
        if self.detector is None:
            _unfitted()


def _unfitted():
    from pytorch_ood.api import RequiresFittingException

    raise RequiresFittingException("the pipeline has to be fitted first: call fit()")


def _detector(split, preset: Optional[str], **hyperparameters) -> LINe:
    """
    :param split: the backbone's encoder and head
    :param preset: ``"auto"``, a paper preset, or ``None`` (the constructor's defaults)
    :param hyperparameters: overriding the preset's (not with ``"auto"``)
    :return: the unfitted detector
    :raises ValueError: for an unknown preset or bad values (the library's own checks)
    """
    encoder, weight, bias = split
    if preset is None:
        detector = LINe(encoder, weight, bias)
    else:
        detector = LINe.from_preset(preset, encoder, weight, bias)
    return detector.set_hyperparameters(**hyperparameters)
