"""
Per-token classifiers: a linear layer applied to every token, one token's output being the logits.

CLIP's attention pooling (timm's ``AttentionPool2d`` in the ``resnet*_clip`` models) projects all
:math:`1 + HW` tokens with its classifier and keeps the first: the logits are that token's output,
and that token's input is an exact feature vector. A classifier applied to every token and then
averaged is exact on the mean of its inputs. Any other reduction (VOLO's max over tokens) is not
a fixed linear map of the inputs, and is left to the caller to refuse.
"""

import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

MEAN = "mean"
Token = Union[int, str]


def is_token_classifier(module: nn.Module, shape: Sequence[int], classes: Optional[int]) -> bool:
    """
    Whether a layer is an ``nn.Linear`` applied to every token, giving ``classes`` values each.

    :param module: the layer
    :param shape: the shape of its output
    :param classes: :math:`K`, the number of logits (``None``: no layer is)
    :return: whether the output is :math:`B \\times \\dots \\times K` with more than one token
    """
    return (
        isinstance(module, nn.Linear)
        and len(shape) >= 3
        and shape[-1] == classes
        and math.prod(shape[1:-1]) > 1
    )


def select(values: Tensor, token: Optional[Token]) -> Tensor:
    """
    One vector per sample from a layer's input or output.

    :param values: :math:`B \\times \\dots \\times D`; with a token, the middle dimensions are the
        tokens (flattened in order)
    :param token: ``None`` for the whole tensor, flattened per sample; a token index (negative
        from the last token); or :data:`MEAN` for the mean over tokens
    :return: :math:`B \\times D'`
    :raises ValueError: if ``values`` has no token dimension but a token is asked for
    """
    if token is None:
        return values.flatten(1)
    if values.dim() < 3:
        raise ValueError(f"token {token!r} asked of a {values.dim()}-d tensor without tokens")
    tokens = values.flatten(1, -2)
    return tokens.mean(1) if token == MEAN else tokens[:, token]


def logit_tokens(outputs: Tensor, logits: Tensor, rtol: float) -> List[Token]:
    """
    The tokens whose output, times one fixed factor, is the logits, then the mean over tokens if
    it is too.

    More than one may match on one pass (a first token that is the mean of the others gives the
    mean of their outputs): the caller keeps those that match on a pass with noise added as well.
    A token index is counted from the nearer end (the first tokens from the start, the last from
    the end, as ``-1``), so that it names the same token at other input sizes.

    :param outputs: a per-token layer's output, :math:`B \\times \\dots \\times K`
    :param logits: :math:`B \\times K`
    :param rtol: the largest error allowed, relative to the largest logit
    :return: the matching tokens in order, :data:`MEAN` last; empty if none matches
    """
    tokens = outputs.flatten(1, -2).double()
    target = logits.double().unsqueeze(1)
    count = tokens.shape[1]
    tokens = torch.cat([tokens, tokens.mean(1, keepdim=True)], dim=1)
    scale = (tokens * target).sum((0, 2)) / (tokens * tokens).sum((0, 2)).clamp_min(1e-300)
    errors = (scale[None, :, None] * tokens - target).abs().amax((0, 2))
    matches = (errors <= rtol * target.abs().max()).nonzero().flatten().tolist()
    return [MEAN if t == count else t if t <= count - 1 - t else t - count for t in matches]
