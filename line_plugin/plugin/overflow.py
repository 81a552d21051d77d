"""
Finite energies for every finite input: rows whose logits could overflow the compute dtype are
scored again in float64, each row divided by a power of two near its largest magnitude (exact),
and scaled back only inside the log-sum-exp. Uses the upstream detector's public attributes only.
"""

import torch
from torch import Tensor


def suspects(det, x: Tensor) -> Tensor:
    """
    :param det: a fitted detector
    :param x: features :math:`B \\times D`
    :return: the rows whose logits may leave the compute dtype: their magnitude bound
        :math:`\\max_j |x_j| \\max_k \\sum_j |W_{kj}| + \\max_k |b_k|` passes a quarter of its
        largest value (float64 for float64 features, else float32)
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    norm = float(det.weight.abs().sum(dim=1).max())
    bound = x.abs().amax(dim=1).double() * norm + float(det.bias.abs().max())
    return ~(bound < torch.finfo(dtype).max / 4)


def rescued_energy(det, x: Tensor) -> Tensor:
    """
    :param det: a fitted detector
    :param x: features :math:`B \\times D`
    :return: their energies, float64, computed as described above
    """
    h = x.double() if det.clip is None else x.double().clamp(max=det.clip)
    largest = h.abs().amax(dim=1, keepdim=True)
    scale = torch.exp2(torch.log2(largest).floor().clamp(min=0, max=1023))
    w, b = det.weight.to(x.device, torch.float64), det.bias.to(x.device, torch.float64)
    h, b = h / scale, b / scale
    logits = torch.addmm(b, h, w.T)
    z = logits
    if det.p_a > 0 or det.p_w > 0:
        keep = det.activation_keep.to(x.device)
        threshold = det.weight_threshold.to(x.device, torch.float64)
        z = torch.empty_like(logits)
        for i, label in enumerate(logits.argmax(dim=1).tolist()):  # few rows: one at a time
            masked = w * torch.gt(w, threshold[label])
            z[i] = torch.addmv(b[i], masked, h[i] * keep[label])
    return -torch.logsumexp(z * scale, dim=1)
