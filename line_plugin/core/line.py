"""

..  autoclass:: line_plugin.core.LINe
    :members:
    :inherited-members:
    :show-inheritance:

"""

import logging
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from pytorch_ood.api import (
    DetectorInfo,
    FeaturesDetector,
    ModelNotSetException,
    Paper,
    RequiresFittingException,
    Task,
)
from pytorch_ood.detector.energy import EnergyBased
from pytorch_ood.utils import is_known
from pytorch_ood.utils.utils import _check_fraction
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import Self

log = logging.getLogger(__name__)

#: rows of features widened to float64 at a time, as a number of values
_CHUNK = 2**21


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(_check_fraction(name, value))


def _clip(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
        raise ValueError(f"clip must be a positive finite number or None, got {value!r}")
    return float(value)


def _check_features(x: Tensor, num_features: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x)
        raise ValueError(f"features must have shape B x D, floating point; got {got}")
    if x.shape[1] != num_features:
        raise ValueError(
            f"features have width {x.shape[1]}, but the final layer expects {num_features}"
        )
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")


def _lerp(a, b, t: float):
    # numpy's (and torch.lerp's) formula, for quantiles identical to numpy.quantile's
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


class LINe(FeaturesDetector):
    """
    Implements LINe from the paper
    *LINe: Out-of-Distribution Detection by Leveraging Important Neurons*.

    For penultimate features :math:`a` (:math:`B \\times D`) and a linear head :math:`W`
    (:math:`K \\times D`), :math:`b` (:math:`K`), LINe keeps only the neurons and weights that
    matter most to the predicted class:

    1. **Fit**: class means :math:`A_c` of the unclipped ID features, by true label, and the
       contributions :math:`C = W \\odot A`: the exact Shapley value of each neuron for the logit
       of a linear head, so no backward pass is needed.
    2. **Activation mask** of class :math:`l`: keep neuron :math:`j` where
       :math:`C_{lj} > \\mathrm{quantile}(C_{l,:}, p_a)`.
    3. **Weight mask** of class :math:`l`: with :math:`P^l_{kj} = |C_{lj}| W_{kj}`, keep
       :math:`W_{kj}` where :math:`P^l_{kj} > \\mathrm{quantile}(P^l, p_w)`.
    4. **Score**: :math:`h = \\min(a, \\mathrm{clip})`, :math:`l = \\arg\\max (W h + b)`,
       :math:`z = (W \\odot M_l)(h \\odot m_l) + b`, mapped to an outlier score by ``detector``
       (by default the energy :math:`-\\log \\sum_k e^{z_k}`).

    Quantiles interpolate linearly, as :func:`torch.quantile` does. A fraction of 0 switches that
    pruning off and ``clip=None`` switches clipping off: with all three off, LINe is
    :class:`EnergyBased`, and with the clip only, :class:`ReAct`. Changing ``p_a``, ``p_w`` or
    ``clip`` after fitting re-derives the masks from the class means, without data.

    Fitting keeps :math:`O(KD)` float64 sums, however many samples stream by, and combines them
    over the processes of an initialized :mod:`torch.distributed` group. Because
    :math:`|C_{lj}| W_{kj}` is monotone in :math:`W_{kj}`, the weight mask of class :math:`l`
    is a threshold per neuron: :math:`W_{kj}` is kept if and only if
    :math:`W_{kj} > T_{lj}`, so the :math:`K \\times K \\times D` masks of the authors' code are
    a :math:`K \\times D` matrix :math:`T`, found by exact selection. Scoring builds one masked
    :math:`K \\times D` matrix per class predicted in a batch, never a
    :math:`B \\times K \\times D` tensor.
    """

    info = DetectorInfo(
        paper=Paper(
            title="LINe: Out-of-Distribution Detection by Leveraging Important Neurons",
            venue="CVPR",
            year=2023,
            url="https://arxiv.org/abs/2303.13995",
            code="https://github.com/YongHyun-Ahn/LINe-Out-of-Distribution-Detection-by-Leveraging-Important-Neurons",
        ),
        tasks={Task.CLASSIFICATION},
        ai_coded=True,
    )

    requires_fit = True

    #: Default search space for :class:`pytorch_ood.utils.GridSearch`: the fractions of neurons
    #: (``p_a``) and weights (``p_w``) pruned per class, and the clipping threshold (``None``: no
    #: clipping).
    hyperparameter_space = {
        "p_a": [0.0, 0.1, 0.5, 0.9],
        "p_w": [0.0, 0.1, 0.5, 0.9],
        "clip": [None, 0.5, 1.0, 2.0],
    }

    def __init__(
        self,
        encoder: Optional[Callable[[Tensor], Tensor]],
        w: Tensor,
        b: Optional[Tensor] = None,
        p_a: float = 0.9,
        p_w: float = 0.9,
        clip: Optional[float] = 1.0,
        detector: Optional[Callable[[Tensor], Tensor]] = None,
    ):
        """
        :param encoder: maps inputs to penultimate features of shape :math:`B \\times D`. Can be
            ``None`` when using ``fit_features(...)`` and ``predict_features(...)`` directly.
        :param w: weights of the final linear layer, shape :math:`K \\times D`
        :param b: bias of the final linear layer, shape :math:`K` (``None``: zeros)
        :param p_a: fraction in :math:`[0, 1]` of the neurons pruned per class
        :param p_w: fraction in :math:`[0, 1]` of the weights pruned per class
        :param clip: clipping threshold of the features; ``None`` disables clipping
        :param detector: maps the pruned logits to outlier scores. Default is
            :meth:`EnergyBased.score <pytorch_ood.detector.EnergyBased.score>`, computed so that
            every finite input gets a finite score.
        :raises ValueError: on malformed weights or hyperparameters
        """
        if not isinstance(w, Tensor) or w.dim() != 2 or 0 in w.shape:
            raise ValueError(f"w must be a non-empty K x D tensor, got {getattr(w, 'shape', w)}")
        b = torch.zeros(w.shape[0]) if b is None else b
        if not isinstance(b, Tensor) or b.shape != w.shape[:1]:
            got = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise ValueError(f"b must have shape K = ({w.shape[0]},) to match w, got {got}")
        for name, t in (("w", w), ("b", b)):
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        self.encoder = encoder
        self.weight = w.detach().to("cpu", torch.float64).clone()
        self.bias = b.detach().to("cpu", torch.float64).clone()
        self._p_a = _fraction("p_a", p_a)
        self._p_w = _fraction("p_w", p_w)
        self._clip = _clip(clip)
        self.detector = detector or EnergyBased.score
        self.class_means: Optional[Tensor] = None  #: :math:`K \times D`, float64
        self.class_counts: Optional[Tensor] = None  #: :math:`K`, int64
        self._invalidate()

    def _invalidate(self) -> None:
        self._keep: Optional[Tensor] = None
        self._threshold: Optional[Tensor] = None
        self._cast: Dict[torch.dtype, Tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def p_a(self) -> float:
        """fraction of the neurons pruned per class"""
        return self._p_a

    @p_a.setter
    def p_a(self, value: float) -> None:
        self._p_a = _fraction("p_a", value)
        self._invalidate()

    @property
    def p_w(self) -> float:
        """fraction of the weights pruned per class"""
        return self._p_w

    @p_w.setter
    def p_w(self, value: float) -> None:
        self._p_w = _fraction("p_w", value)
        self._invalidate()

    @property
    def clip(self) -> Optional[float]:
        """clipping threshold of the features; ``None``: no clipping"""
        return self._clip

    @clip.setter
    def clip(self, value: Optional[float]) -> None:
        self._clip = _clip(value)

    def set_hyperparameters(self, **kwargs) -> Self:
        """
        Set hyperparameters by name; a fitted detector re-derives its masks without data.

        :return: self
        :raises ValueError: for unknown names or invalid values
        """
        for name in kwargs:
            if name not in ("p_a", "p_w", "clip"):
                raise ValueError(f"Unknown hyperparameter '{name}' for LINe: use p_a, p_w or clip")
        for name, value in kwargs.items():
            setattr(self, name, value)
        return self

    # -- step 1: class means -----------------------------------------------------------------

    @torch.no_grad()
    def fit(self, data_loader: DataLoader) -> Self:
        """
        One pass over ``data_loader`` through the encoder, in :math:`O(KD)` memory. Under an
        initialized :mod:`torch.distributed` group, each process passes its own shard.

        :param data_loader: yields batches ``(x, y)``; samples with ``y < 0`` are ignored
        :return: the fitted detector
        :raises ModelNotSetException: without an encoder
        :raises ValueError: on bad labels or features, or if a class has no sample
        """
        if self.encoder is None:
            raise ModelNotSetException("LINe.fit() needs an encoder; use fit_features()")
        device = self.device
        if device is None:
            device = "cpu"
            log.warning(f"No device set. Will use '{device}'.")
            self.to(device)
        self._start_fit()
        for x, y in data_loader:
            y = self._labels(y, len(x))
            known = is_known(y)
            if known.any():
                x, y = (x, y) if known.all() else (x[known.to(x.device)], y[known])
                self._accumulate(self.encoder(x.to(device)), y)
        return self._finish_fit()

    @torch.no_grad()
    def fit_features(self, x: Tensor, y: Tensor) -> Self:
        """
        :param x: training features, shape :math:`N \\times D`
        :param y: labels, shape :math:`N` (integers, or floats of integral value); samples with
            ``y < 0`` are ignored
        :return: the fitted detector, the same as :meth:`fit` on the inputs of ``x``
        :raises ValueError: on bad labels or features, or if a class has no sample
        """
        y = self._labels(y, len(x))
        known = is_known(y)
        self._start_fit()
        self._accumulate(x if known.all() else x[known.to(x.device)], y[known])
        return self._finish_fit()

    @staticmethod
    def _labels(y, n: int) -> Tensor:
        y = torch.as_tensor(y)
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) to match the features, got {y.shape}")
        if y.dtype == torch.bool or y.is_complex():
            raise ValueError(f"labels must be integers, got {y.dtype}")
        if y.is_floating_point():
            if not torch.equal(y, y.round()):  # NaN and fractions
                raise ValueError("labels must be integers; got floats with a fractional part")
            y = y.long()
        return y

    def _start_fit(self) -> None:
        self._sums = torch.zeros(self.weight.shape, dtype=torch.float64)
        self._counts = torch.zeros(self.weight.shape[0], dtype=torch.int64)

    def _accumulate(self, x: Tensor, y: Tensor) -> None:
        """adds ID features ``x`` with labels ``y`` to the class sums"""
        _check_features(x, self.weight.shape[1])
        y = y.to("cpu", torch.int64)
        if y.numel() and int(y.max()) >= len(self._counts):
            raise ValueError(
                f"label {int(y.max())} is out of range for a final layer of "
                f"{len(self._counts)} classes"
            )
        rows = max(1, _CHUNK // x.shape[1])
        for i in range(0, len(x), rows):  # copied in its own dtype, widened on the CPU
            self._sums.index_add_(0, y[i : i + rows], x[i : i + rows].cpu().double())
        self._counts += torch.bincount(y, minlength=len(self._counts))

    def _finish_fit(self) -> Self:
        sums, counts = self._sums, self._counts
        del self._sums, self._counts
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            sums, counts = sums.to(device), counts.to(device)
            dist.all_reduce(sums)
            dist.all_reduce(counts)
            sums, counts = sums.cpu(), counts.cpu()
        missing = (counts == 0).nonzero().flatten().tolist()
        if len(missing) == len(counts):
            raise ValueError("no in-distribution sample (label >= 0) to fit on")
        if missing:
            raise ValueError(
                f"no training sample for class(es) {str(missing[:20])[1:-1]}: LINe needs the mean "
                f"features of every one of the {len(counts)} classes"
            )
        means = sums / counts[:, None]
        bound = float(means.abs().max()) * float(self.weight.abs().max())
        if not np.isfinite(bound * max(1.0, float(self.weight.abs().max()))):
            raise ValueError(
                "the class means times the final-layer weights overflow float64: scale the "
                "features down"
            )
        self.class_means = means.to(self.weight.device)
        self.class_counts = counts.to(self.weight.device)
        self._invalidate()
        self._masks()
        return self

    # -- steps 2 and 3: masks ------------------------------------------------------------------

    @property
    def activation_keep(self) -> Tensor:
        """the activation masks of step 2, :math:`K \\times D` (bool): row :math:`l` is
        :math:`m_l`"""
        if self._keep is None:
            self._masks()
        return self._keep

    @property
    def weight_threshold(self) -> Tensor:
        """the weight masks of step 3 as thresholds :math:`T` (:math:`K \\times D`, float64):
        :math:`W_{kj}` is kept for class :math:`l` if and only if :math:`W_{kj} > T_{lj}`"""
        if self._threshold is None:
            self._masks()
        return self._threshold

    def _masks(self) -> None:
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        weight = self.weight.cpu().numpy()
        contrib = weight * self.class_means.cpu().numpy()  # C = W * A
        keep = np.ones(weight.shape, dtype=bool)
        if self._p_a > 0:
            keep = contrib > np.quantile(contrib, self._p_a, axis=1)[:, None]
        threshold = np.full(weight.shape, -np.inf)
        if self._p_w > 0:
            select = _WeightThreshold(weight, self._p_w)
            for label in range(len(weight)):
                threshold[label] = select(np.abs(contrib[label]))
        self._keep = torch.from_numpy(keep).to(self.weight.device)
        self._threshold = torch.from_numpy(threshold).to(self.weight.device)

    def _tensors(self, dtype: torch.dtype, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
        """``W``, ``b`` and the thresholds (:math:`+\\infty` for pruned neurons) in ``dtype``"""
        if dtype not in self._cast:
            folded = self.weight_threshold.masked_fill(~self.activation_keep, np.inf)
            self._cast[dtype] = (self.weight.to(dtype), self.bias.to(dtype), folded.to(dtype))
        return tuple(t.to(device) for t in self._cast[dtype])

    # -- step 4: score -------------------------------------------------------------------------

    def predict(self, x: Tensor) -> Tensor:
        """
        :param x: inputs, passed through ``encoder``
        :return: outlier scores of shape :math:`B`
        :raises ModelNotSetException: without an encoder
        """
        if self.encoder is None:
            raise ModelNotSetException("LINe.predict() needs an encoder; use predict_features()")
        device = self.device
        with torch.no_grad():
            return self.predict_features(self.encoder(x if device is None else x.to(device)))

    @torch.no_grad()
    def predict_features(self, x: Tensor) -> Tensor:
        """
        :param x: penultimate features, shape :math:`B \\times D`; float64 is computed in
            float64, other dtypes in float32
        :return: outlier scores, shape :math:`B`. With the default ``detector``, rows whose
            logits overflow are recomputed in float64, scaled by a power of two, so every finite
            input gets a finite score (saturated at the largest value of the output dtype).
        :raises RequiresFittingException: before fitting
        :raises ValueError: on features of the wrong width, or with NaN or infinite values
        """
        logits, z = self._logits(x)
        scores = self.detector(z)
        if self.detector is EnergyBased.score:
            overflow = ~(torch.isfinite(logits).all(dim=1) & torch.isfinite(z).all(dim=1))
            if overflow.any():
                limit = torch.finfo(scores.dtype).max
                wide = self._rescaled_energy(x[overflow]).clamp(-limit, limit)
                scores[overflow] = wide.to(scores.dtype)
        return scores

    def pruned_logits(self, x: Tensor) -> Tensor:
        """
        :param x: penultimate features, shape :math:`B \\times D`
        :return: the pruned logits :math:`z` of step 4, shape :math:`B \\times K`
        """
        return self._logits(x)[1]

    def _logits(self, x: Tensor, scale: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """
        The full logits (which pick the class) and the pruned logits; with ``scale``
        (:math:`B \\times 1`), those of the clipped features divided by ``scale``, in float64.
        """
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted: call fit() or fit_features()")
        _check_features(x, self.weight.shape[1])
        dtype = torch.float64 if x.dtype == torch.float64 or scale is not None else torch.float32
        w, b, threshold = self._tensors(dtype, x.device)
        h = x.to(dtype) if self._clip is None else x.to(dtype).clamp(max=self._clip)
        if scale is not None:
            h, b = h / scale, b / scale
        logits = torch.addmm(b, h, w.T)
        if self._p_w == 0 and self._p_a == 0:
            return logits, logits
        pred = logits.argmax(dim=1)
        if self._p_w == 0:
            keep = self.activation_keep.to(x.device)[pred]
            return logits, torch.addmm(b, h * keep, w.T)
        return logits, self._masked_logits(h, pred, w, b, threshold)

    def _rescaled_energy(self, x: Tensor) -> Tensor:
        # each row divided by a power of two near its largest magnitude (exact), so that no
        # product or sum overflows; scaled back only inside the log-sum-exp
        h = x.double() if self._clip is None else x.double().clamp(max=self._clip)
        largest = h.abs().amax(dim=1, keepdim=True)
        scale = torch.exp2(torch.log2(largest).floor().clamp(min=0, max=1023))
        return -torch.logsumexp(self._logits(x, scale)[1] * scale, dim=1)

    @staticmethod
    def _masked_logits(h: Tensor, pred: Tensor, w: Tensor, b: Tensor, threshold: Tensor) -> Tensor:
        """
        :math:`z_i = (W \\odot [W > T_{l_i}]) h_i + b` for each row :math:`i` with predicted
        class :math:`l_i`: rows sorted by class, one masked :math:`K \\times D` matrix per class
        (each weight multiplied by 1 or 0: exact); ``b`` is :math:`K` or :math:`B \\times K`.
        """
        order = pred.argsort()
        classes, counts = torch.unique_consecutive(pred[order], return_counts=True)
        h, b_sorted = h[order], (b if b.dim() == 1 else b[order])
        z = torch.empty(len(h), len(w), dtype=h.dtype, device=h.device)
        masked = torch.empty_like(w)
        start = 0
        for label, count in zip(classes.tolist(), counts.tolist()):
            rows = slice(start, start + count)
            torch.gt(w, threshold[label], out=masked).mul_(w)
            bias = b_sorted if b.dim() == 1 else b_sorted[rows]
            torch.addmm(bias, h[rows], masked.T, out=z[rows])
            start += count
        return torch.empty_like(z).index_copy_(0, order, z)

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> Dict:
        """
        :return: the fitted state (head, class statistics, hyperparameters), on the CPU
        :raises RequiresFittingException: before fitting
        """
        if self.class_means is None:
            raise RequiresFittingException("LINe has to be fitted before saving its state")
        return {
            "version": 2,
            "hyperparameters": {"p_a": self._p_a, "p_w": self._p_w, "clip": self._clip},
            "weight": self.weight.cpu(),
            "bias": self.bias.cpu(),
            "class_means": self.class_means.cpu(),
            "class_counts": self.class_counts.cpu(),
        }

    def load_state_dict(self, state: Dict) -> Self:
        """
        Restore a state of :meth:`state_dict`; the masks are derived again, bit for bit.

        :raises ValueError: if the state is malformed or was fitted for another final layer
        """
        keys = {"version", "hyperparameters", "weight", "bias", "class_means", "class_counts"}
        missing = keys - set(state) if isinstance(state, dict) else keys
        if missing:
            raise ValueError(f"not a LINe state: it lacks {sorted(missing)}")
        if state["version"] not in (1, 2):
            raise ValueError(f"unsupported LINe state version {state['version']}")
        for name in ("weight", "class_means"):
            if state[name].shape != self.weight.shape:
                raise ValueError(
                    f"the state's {name} has shape {tuple(state[name].shape)}, but this "
                    f"detector's final layer is {tuple(self.weight.shape)} (K x D)"
                )
        if not (
            torch.equal(state["weight"].to(self.weight), self.weight)
            and torch.equal(state["bias"].to(self.bias), self.bias)
        ):
            raise ValueError(
                "the state was fitted for another final layer (its weights differ from this "
                "detector's): fit again for this model"
            )
        hp = state["hyperparameters"]
        self._p_a, self._p_w = _fraction("p_a", hp["p_a"]), _fraction("p_w", hp["p_w"])
        self._clip = _clip(hp["clip"])
        self.class_means = state["class_means"].to(self.weight.device, torch.float64).clone()
        self.class_counts = state["class_counts"].to(self.weight.device).clone()
        self._invalidate()
        return self


class _WeightThreshold:
    """
    Step 3 for one class at a time: from the scales :math:`a_j = |C_{lj}|`, the thresholds
    :math:`T_{l,:}` with :math:`W_{kj}` kept if and only if :math:`a_j W_{kj} >
    \\mathrm{quantile}(a \\odot W, p_w)`.

    The products of column :math:`j` are ordered as the sorted column :math:`W_{:,j}` is, so the
    number of products :math:`\\le v` in a column is a binary search for :math:`v / a_j`,
    corrected exactly at its boundary. The two order statistics of the quantile are bracketed by a
    fixed sample of products and selected among the few products inside the bracket: about
    :math:`O(D \\log K)` per class instead of :math:`O(KD)`. Where the bracket misses, all
    :math:`KD` products are computed.
    """

    def __init__(self, weight: np.ndarray, p_w: float, sample_size: int = 16384):
        self.weight = weight
        self.sorted = np.sort(weight, axis=0)
        self.sorted_rows = torch.from_numpy(np.ascontiguousarray(self.sorted.T))  # D x K
        self.columns = np.arange(weight.shape[1])
        virtual = (weight.size - 1) * p_w  # numpy's linear quantile: two order statistics
        self.lo = int(np.floor(virtual))
        self.hi, self.t = min(self.lo + 1, weight.size - 1), float(virtual - np.floor(virtual))
        m = min(sample_size, weight.size)
        flat = np.random.default_rng(0).choice(weight.size, size=m, replace=False)
        rows, self.sample_cols = np.unravel_index(flat, weight.shape)
        self.sample_weight = weight[rows, self.sample_cols]
        # sample ranks that bracket the order statistics with overwhelming probability
        q = self.lo / max(weight.size - 1, 1)
        spread = int(8 * np.sqrt(m * max(q * (1 - q), 1.0 / m))) + 8
        self.sample_lo, self.sample_hi = int(q * (m - 1)) - spread, int(q * (m - 1)) + spread + 1
        self.sample_ranks = [r for r in (self.sample_lo, self.sample_hi) if 0 <= r < m]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        sample = self.sample_weight * a[self.sample_cols]
        if self.sample_ranks:  # the two sample order statistics of the bracket, in place
            sample.partition(self.sample_ranks)
        v_lo = sample[self.sample_lo] if self.sample_lo >= 0 else -np.inf
        v_hi = sample[self.sample_hi] if self.sample_hi < len(sample) else np.inf
        c_lo, c_hi = self._counts(a, v_lo), self._counts(a, v_hi)
        if c_lo is None or c_hi is None or c_lo.sum() > self.lo or c_hi.sum() <= self.hi:
            return self._dense(a)
        # the products in (v_lo, v_hi]: ranks c_lo[j] .. c_hi[j] - 1 of each sorted column
        lengths = c_hi - c_lo
        cols = np.repeat(self.columns, lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.arange(len(cols)) - starts + np.repeat(c_lo, lengths)
        below = int(c_lo.sum())
        part = np.partition(self.sorted[rows, cols] * a[cols], (self.lo - below, self.hi - below))
        pruned = self._counts(a, _lerp(part[self.lo - below], part[self.hi - below], self.t))
        return self._dense(a) if pruned is None else self._thresholds(pruned)

    def _dense(self, a: np.ndarray) -> np.ndarray:
        products = self.weight * a
        part = np.partition(products.ravel(), (self.lo, self.hi))
        cut = _lerp(part[self.lo], part[self.hi], self.t)
        return self._thresholds(np.count_nonzero(products <= cut, axis=0))

    def _thresholds(self, pruned: np.ndarray) -> np.ndarray:
        # the largest pruned weight of each column; -inf where none is pruned
        largest = self.sorted[np.maximum(pruned - 1, 0), self.columns]
        return np.where(pruned > 0, largest, -np.inf)

    def _counts(self, a: np.ndarray, v: float) -> Optional[np.ndarray]:
        """per column, the number of products :math:`\\le v`; ``None`` if ties prevent it"""
        num_rows = len(self.sorted)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = torch.from_numpy(np.where(a > 0, v / a, 0.0))
        r = torch.searchsorted(self.sorted_rows, u[:, None], right=True)[:, 0].numpy()
        for _ in range(8):  # the division is off by an ulp at most: fix the boundary exactly
            below = np.clip(r - 1, 0, num_rows - 1)
            too_many = (r > 0) & (a * self.sorted[below, self.columns] > v)
            at = np.minimum(r, num_rows - 1)
            too_few = (r < num_rows) & (a * self.sorted[at, self.columns] <= v)
            if not (too_many.any() or too_few.any()):
                break
            r = r - too_many + too_few
        else:
            return None
        # a zero scale makes every product 0: all are <= v exactly when 0 <= v
        return np.where(a > 0, r, num_rows if v >= 0 else 0)
