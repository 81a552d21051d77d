"""
``preset="auto"``: LINe's ``p_a``, ``p_w`` and ``clip`` chosen from in-distribution training
data alone, for a backbone the paper's settings were not made for.

How it chooses (:func:`fit_auto`, called by :meth:`line_plugin.LINe.fit` of a detector made with
``preset="auto"``):

1. One pass over the training loader. Every :data:`HOLD_OUT_EVERY`-th image of the stream (at
   most :data:`MAX_HELD_OUT`) is held out of the fit; the rest are fitted on, as by a plain fit.
   Each held-out image is encoded, and so is one synthetic outlier made from it
   (:func:`synthetic_outliers`: its tiles shuffled, or noise with its own channel statistics).
   The backbone thus runs on about 1.2 times the images of a plain fit.
2. Every candidate of :data:`CANDIDATES` (LINe's settings, the paper's CIFAR-10 preset, ReAct
   and Energy as the special cases of LINe) is scored on the cached held-out and outlier
   features: the masks are re-derived from the class means, without data. The measure is the
   AUROC of held-out images against their outliers.
3. The rule (:func:`choose`): the best candidate, unless it beats the Energy setting
   (``p_a = p_w = 0``, no clip) by less than :data:`MARGIN` AUROC points; then Energy. On signed
   features (more than 5 % negative activations: ViT, ConvNeXt), where LINe's masks and clip do
   not mean what they mean after a ReLU, the margin is :data:`SIGNED_MARGIN`.

No OOD test data is seen. The choice, its reason and the validation AUROCs are kept in
``detector.auto_choice`` (an :class:`AutoChoice`), logged, and saved in the state file's metadata
under ``"auto"``. The fitted state stays :math:`O(KD)`: the held-out features are dropped
after the choice.
"""

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .presets import AUTO as AUTO  # re-exported: the preset name

log = logging.getLogger(__name__)

#: the names of LINe's hyperparameters, which ``"auto"`` chooses
HYPERPARAMETERS = ("p_a", "p_w", "clip", "clip_quantile")
#: every this many-th training image of the stream is held out (10 %)
HOLD_OUT_EVERY = 10
#: at most this many held-out images (and as many outliers)
MAX_HELD_OUT = 1000
#: fewer held-out images than this, and the choice is Energy
MIN_HELD_OUT = 20
#: AUROC points a candidate must gain over Energy on the held-out split, post-ReLU features
MARGIN = 1.0
#: the same on signed features
SIGNED_MARGIN = 2.0
#: share of negative activations above which features are signed
SIGNED_SHARE = 0.05

#: ``name -> hyperparameters``: ``clip_quantile`` is a quantile of the ID training activations,
#: ``clip`` an absolute threshold. Energy first (ties go to it), then ReAct, the paper's preset
#: and LINe with a clip fitted as a quantile.
CANDIDATES: Dict[str, Dict[str, Optional[float]]] = {
    "energy": {"p_a": 0.0, "p_w": 0.0, "clip": None},
    "react q0.9": {"p_a": 0.0, "p_w": 0.0, "clip_quantile": 0.9},
    "react q0.99": {"p_a": 0.0, "p_w": 0.0, "clip_quantile": 0.99},
    "paper cifar10": {"p_a": 0.9, "p_w": 0.9, "clip": 1.0},
    **{
        f"line p_a {p_a} p_w {p_w} {'q' + str(q) if q else 'no clip'}": {
            "p_a": p_a,
            "p_w": p_w,
            **({"clip_quantile": q} if q else {"clip": None}),
        }
        for p_a in (0.5, 0.9)
        for p_w in (0.0, 0.5, 0.9)
        for q in (None, 0.99)
    },
}


@dataclass
class AutoChoice:
    """
    What ``preset="auto"`` chose, and why.

    :param name: the chosen candidate (a key of :data:`CANDIDATES`)
    :param p_a: chosen fraction of neurons pruned
    :param p_w: chosen fraction of weights pruned
    :param clip: chosen clipping threshold (absolute; ``None``: no clip)
    :param clip_quantile: the quantile of the training activations ``clip`` is, if fitted so
    :param reason: one sentence
    :param val_auroc: validation AUROC (percent) of every candidate
    :param held_out: number of held-out ID images (and of synthetic outliers)
    :param signed_share: share of negative training activations
    :param seed: seed of the outliers
    """

    name: str
    p_a: float
    p_w: float
    clip: Optional[float]
    clip_quantile: Optional[float]
    reason: str
    val_auroc: Dict[str, float] = field(default_factory=dict)
    held_out: int = 0
    signed_share: float = 0.0
    seed: int = 0

    @property
    def signed(self) -> bool:
        """whether the features are signed (more than :data:`SIGNED_SHARE` negative)"""
        return self.signed_share > SIGNED_SHARE

    def summary(self) -> str:
        """:return: one line: the setting chosen and the reason"""
        clip = "none" if self.clip is None else f"{self.clip:.4g}"
        if self.clip_quantile is not None:
            clip += f" (the {self.clip_quantile:g} quantile of the training activations)"
        return (
            f"preset auto chose {self.name!r}: p_a={self.p_a:g}, p_w={self.p_w:g}, clip={clip}; "
            f"{self.reason}"
        )

    def signed_note(self) -> Optional[str]:
        """:return: what signed features mean for LINe, or ``None`` for post-ReLU features"""
        if not self.signed:
            return None
        return (
            f"{100 * self.signed_share:.0f} % of the training activations are negative: LINe's "
            "masks and clip assume post-ReLU features, so on this backbone pruning is kept only "
            f"where it gains at least {SIGNED_MARGIN:g} AUROC points on the held-out split"
        )

    def metadata(self) -> Dict:
        """:return: plain values, for a state file's metadata"""
        out = asdict(self)
        out["val_auroc"] = {k: round(v, 3) for k, v in self.val_auroc.items()}
        out["summary"] = self.summary()
        out["signed_note"] = self.signed_note()
        return out


# -- synthetic outliers --------------------------------------------------------------------------


def synthetic_outliers(x: Tensor, seeds: Sequence[int], grid: int = 4) -> Tensor:
    """
    One synthetic outlier per input, made from it alone: by ``seeds[i] % 4``, its ``grid`` x
    ``grid`` tiles shuffled (0 and 1; the pixels and their statistics stay), Gaussian noise (2)
    or uniform noise (3) with its own per-channel mean and standard deviation (or range), so
    that no input normalisation need be known.

    :param x: inputs, :math:`B \\times C \\times H \\times W` images (other shapes: every
        value of a row is a "tile")
    :param seeds: one integer per input; the outlier depends only on it and the input
    :param grid: tiles per side
    :return: outliers, the shape and dtype of ``x``
    :raises ValueError: if ``seeds`` does not match ``x``
    """
    if len(seeds) != len(x):
        raise ValueError(f"need one seed per input: {len(seeds)} seeds for {len(x)} inputs")
    out = torch.empty_like(x)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        row = x[i].detach().cpu()
        kind = int(seed) % 4
        if kind < 2:
            out[i] = _shuffle_tiles(row, grid, g).to(out)
        else:
            flat = row.reshape(row.shape[0], -1) if row.dim() == 3 else row.reshape(1, -1)
            flat = flat.double()
            if kind == 2:
                mean, std = flat.mean(1, keepdim=True), flat.std(1, keepdim=True, correction=0)
                noise = mean + std * torch.randn(flat.shape, generator=g, dtype=torch.float64)
            else:
                low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
                noise = low + (high - low) * torch.rand(
                    flat.shape, generator=g, dtype=torch.float64
                )
            out[i] = noise.reshape(row.shape).to(out)
    return out


def _shuffle_tiles(img: Tensor, grid: int, g: torch.Generator) -> Tensor:
    if img.dim() != 3 or img.shape[1] < grid or img.shape[2] < grid:
        flat = img.flatten()
        return flat[torch.randperm(len(flat), generator=g)].reshape(img.shape)
    h, w = img.shape[1] // grid, img.shape[2] // grid
    tiles = [
        img[:, r * h : (r + 1) * h, c * w : (c + 1) * w] for r in range(grid) for c in range(grid)
    ]
    order = torch.randperm(len(tiles), generator=g).tolist()
    out = img.clone()
    for k, src in enumerate(order):
        r, c = divmod(k, grid)
        out[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = tiles[src]
    return out


def outlier_seeds(seed: int, indices: Sequence[int]) -> List[int]:
    """:return: the outlier seeds of the images at ``indices`` of the stream, for ``seed``"""
    return [seed * 1_000_003 + int(i) for i in indices]


# -- the choice ----------------------------------------------------------------------------------


def auroc(id_scores: Tensor, ood_scores: Tensor) -> float:
    """
    :return: the AUROC (percent) of outlier scores, OOD as the positive class: the probability
        that an outlier scores above an ID sample, ties counting half
    """
    a, b = id_scores.double().flatten().cpu(), ood_scores.double().flatten().cpu()
    above, ties = 0.0, 0.0
    for chunk in b.split(1024):
        above += float((chunk[:, None] > a[None, :]).sum())
        ties += float((chunk[:, None] == a[None, :]).sum())
    return 100 * (above + 0.5 * ties) / (len(a) * len(b))


def choose(
    detector,
    id_features: Tensor,
    outlier_features: Tensor,
    candidates: Optional[Dict[str, Dict[str, Optional[float]]]] = None,
    seed: int = 0,
) -> AutoChoice:
    """
    Score every candidate on held-out ID features against synthetic outlier features, apply the
    rule of the module docstring, and set the chosen hyperparameters on ``detector``.

    :param detector: a fitted :class:`line_plugin.LINe` (class means and activation sample)
    :param id_features: held-out ID features, never fitted on, :math:`N \\times D`
    :param outlier_features: features of synthetic outliers, :math:`M \\times D`
    :param candidates: default :data:`CANDIDATES`; must hold ``"energy"``
    :param seed: recorded in the choice
    :return: the choice (also ``detector.auto_choice``)
    """
    candidates = CANDIDATES if candidates is None else candidates
    sample = detector.activation_sample
    signed_share = (
        0.0 if sample is None or not sample.numel() else float((sample < 0).double().mean())
    )
    held_out = min(len(id_features), len(outlier_features))
    scores: Dict[str, float] = {}
    if held_out >= MIN_HELD_OUT:
        for name, hp in candidates.items():
            try:
                detector.set_hyperparameters(**_full(hp))
            except ValueError:  # e.g. a non-positive quantile clip on signed features
                continue
            scores[name] = auroc(
                detector.predict_features(id_features.to(detector.weight.device)),
                detector.predict_features(outlier_features.to(detector.weight.device)),
            )
    margin = SIGNED_MARGIN if signed_share > SIGNED_SHARE else MARGIN
    kind = "signed" if signed_share > SIGNED_SHARE else "post-ReLU"
    if not scores:
        name = "energy"
        reason = (
            f"only {held_out} held-out images (fewer than {MIN_HELD_OUT}): the Energy "
            "setting, which prunes nothing"
        )
    else:
        best = max(scores, key=lambda k: (scores[k], k == "energy"))
        energy = scores["energy"]
        gain = scores[best] - energy
        if best == "energy":
            name, reason = best, "Energy scored best on the held-out split"
        elif gain < margin:
            name = "energy"
            reason = (
                f"the best candidate, {best!r}, gains only {gain:.2f} AUROC points over Energy "
                f"({scores[best]:.1f} vs {energy:.1f}) on the held-out split, less than the "
                f"margin of {margin:g} for {kind} features: Energy, which prunes nothing"
            )
        else:
            name = best
            reason = (
                f"it gains {gain:.2f} AUROC points over Energy ({scores[best]:.1f} vs "
                f"{energy:.1f}) on {held_out} held-out training images against synthetic "
                f"outliers made from them (margin {margin:g} for {kind} features)"
            )
    detector.set_hyperparameters(**_full(candidates[name]))
    choice = AutoChoice(
        name=name,
        **detector.hyperparameters,
        reason=reason,
        val_auroc=scores,
        held_out=held_out,
        signed_share=signed_share,
        seed=seed,
    )
    detector.auto_choice = choice
    log.info(choice.summary())
    if choice.signed:
        log.info(choice.signed_note())
    return choice


def _full(hp: Dict[str, Optional[float]]) -> Dict[str, Optional[float]]:
    # a quantile clip, or an absolute one (which unsets the quantile)
    out = dict(hp)
    if "clip_quantile" not in out:
        out.setdefault("clip", None)
    return out


# -- fitting from a loader -----------------------------------------------------------------------


class _HoldOut:
    """
    The training loader with every :data:`HOLD_OUT_EVERY`-th image (up to
    :data:`MAX_HELD_OUT`) labelled ``-1``, so that the fit ignores it; the held-out images and
    their synthetic outliers are encoded on the side.
    """

    def __init__(self, loader, encoder, device, seed: int):
        self.loader = loader
        self.encoder = encoder
        self.device = device
        self.seed = seed
        self.id_features: List[Tensor] = []
        self.outlier_features: List[Tensor] = []
        self.count = 0
        self.every = HOLD_OUT_EVERY
        n = _length(loader)
        if n is not None:  # spread the held-out images over the whole stream
            self.every = max(HOLD_OUT_EVERY, math.ceil(n / MAX_HELD_OUT))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor]]:
        start = 0
        for x, y in self.loader:
            y = torch.as_tensor(y).clone()
            index = torch.arange(start, start + len(x))
            start += len(x)
            held = (index % self.every == self.every // 2) & (y >= 0)
            room = MAX_HELD_OUT - self.count
            if int(held.sum()) > room:
                held[held.nonzero().flatten()[room:]] = False
            if held.any():
                self._encode(x[held.to(x.device)], index[held])
                self.count += int(held.sum())
                y[held] = -1
            yield x, y

    @torch.no_grad()
    def _encode(self, x: Tensor, index: Tensor) -> None:
        outliers = synthetic_outliers(x, outlier_seeds(self.seed, index.tolist()))
        self.id_features.append(self.encoder(x.to(self.device)).float().cpu())
        self.outlier_features.append(self.encoder(outliers.to(self.device)).float().cpu())


def _length(loader) -> Optional[int]:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def fit_auto(detector, data_loader, seed: int = 0, fit=None) -> AutoChoice:
    """
    Fit ``detector`` on ``data_loader`` less a held-out share, and choose its hyperparameters
    (module docstring).

    :param detector: an unfitted :class:`line_plugin.LINe` with an encoder
    :param data_loader: yields ``(images, labels)``; samples with labels ``< 0`` are ignored
    :param seed: seed of the synthetic outliers
    :param fit: the fitting function called with the filtered loader (default
        ``detector.fit``)
    :return: the choice
    """
    device = detector.device or "cpu"
    stream = _HoldOut(data_loader, detector.encoder, device, seed)
    # fitted at the Energy setting (no masks to derive, no warning); chosen after
    detector.set_hyperparameters(**_full(CANDIDATES["energy"]))
    (fit or detector.fit)(stream)
    id_z, out_z = _gather(stream.id_features), _gather(stream.outlier_features)
    empty = torch.zeros(0, detector.num_features)
    return choose(
        detector,
        id_z if id_z is not None else empty,
        out_z if out_z is not None else empty,
        seed=seed,
    )


def _gather(parts: List[Tensor]) -> Optional[Tensor]:
    # this process's held-out features, with those of every process of a distributed group
    # (in rank order), so that every process makes the same choice
    mine = torch.cat(parts) if parts else None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mine
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, None if mine is None else mine.numpy())
    every = [torch.from_numpy(p) for p in every if p is not None]
    return torch.cat(every) if every else None
