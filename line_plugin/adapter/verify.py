"""
The check every split passes: its own encoder and head give the model's logits on the probe.
"""

import torch
from torch import Tensor, nn

from .probes import Probe


class NoExactHead(Exception):
    """The logits are not an affine function of the candidate layers' inputs."""


def check(encoder: nn.Module, weight: Tensor, bias: Tensor, probe: Probe, label: str) -> Tensor:
    """
    Raise :class:`NoExactHead` unless ``encoder(x) @ weight.T + bias`` gives the probe's logits.

    :param encoder: the features; it holds the model as ``encoder.model``, which runs with the
        probe's replacement parameters in place
    :param weight: :math:`K \\times D`
    :param bias: :math:`K`
    :param probe: the batch and its logits
    :param label: the split, for the message
    :return: the features, :math:`B \\times D`
    :raises NoExactHead: if the features do not fit the head, or the logits differ by more than
        the probe's tolerance, relative to the largest logit (compared in float32)
    """
    features = probe.run(encoder, "model.")
    if features.shape[1] != weight.shape[1]:
        raise NoExactHead(f"{features.shape[1]} features for a head of {weight.shape[1]} inputs")
    estimate = features.float() @ weight.float().T + bias.float()
    error = relative_error(estimate, probe.logits.float())
    if not error <= probe.rtol:
        raise NoExactHead(f"{label} is off by {error:.2g} (relative) on the probe batch")
    return features


def relative_error(estimate: Tensor, target: Tensor) -> float:
    """
    The largest absolute error, relative to the largest absolute target value.

    :param estimate: any shape
    :param target: the same shape
    :return: :math:`\\max |e - t| / \\max |t|`
    """
    scale = target.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    return float((estimate - target).abs().max() / scale)
