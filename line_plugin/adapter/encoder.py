"""
The encoder of a split model: the input(s) of its final linear layer(s).

:class:`ClassifierInputs` captures them by hooks while the whole model runs;
:class:`PreLogits` asks a timm model for them through its own head API.

.. autoclass:: line_plugin.adapter.ClassifierInputs
    :members:

.. autoclass:: line_plugin.adapter.PreLogits
    :members:
"""

from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .tokens import Token, select


class ClassifierInputs(nn.Module):
    """
    Penultimate features of a classifier: the inputs of some of its layers during one forward pass.

    The wrapped model runs unchanged; forward pre-hooks, registered for the duration of the call
    only, capture the input of each named layer. Each input is flattened per sample (or, for a
    layer applied to every token, taken at one token or averaged over tokens) and the blocks are
    concatenated in the order of ``layers``. The model must stay in evaluation mode: the split
    that made this encoder was checked in that mode only.

    :param model: the classifier, registered as a submodule (``to(device)`` moves it)
    :param layers: names (as in ``model.named_modules()``) of the layers whose inputs form the
        features; each must run exactly once per forward pass
    :param route: how the layers were found, for messages and reports
    :param tokens: one entry per layer: ``None`` for its whole input; for a layer applied to every
        token (input :math:`B \\times T \\times D`), the index of the token to take (negative
        from the last) or ``"mean"`` for the mean over tokens; default all ``None``
    :raises ValueError: if ``tokens`` does not have one entry per layer
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        route: str = "",
        tokens: Optional[Sequence[Optional[Token]]] = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.layers = tuple(layers)
        self.route = route
        self.tokens = tuple(tokens) if tokens else (None,) * len(self.layers)
        if len(self.tokens) != len(self.layers):
            raise ValueError(
                f"{len(self.tokens)} tokens for {len(self.layers)} layers: give one per layer"
            )

    def forward(self, x: Tensor) -> Tensor:
        """
        :param x: a batch the model accepts, e.g. images :math:`B \\times C \\times H \\times W`
        :return: features :math:`B \\times D`
        :raises RuntimeError: if the model is in training mode, or a layer did not run exactly once
        """
        _check_eval_mode(self.model)
        captured: Dict[str, List[Tensor]] = {name: [] for name in self.layers}
        handles = [
            self.model.get_submodule(name).register_forward_pre_hook(
                partial(_capture, captured[name])
            )
            for name in self.layers
        ]
        try:
            self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        blocks = []
        for name, token in zip(self.layers, self.tokens):
            if len(captured[name]) != 1:
                raise RuntimeError(
                    f"layer {name!r} of {type(self.model).__name__} ran {len(captured[name])} "
                    "times in one forward pass (expected once)"
                )
            blocks.append(select(captured[name][0], token))
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)

    def extra_repr(self) -> str:
        tokens = f", tokens={self.tokens}" if any(t is not None for t in self.tokens) else ""
        return f"layers={self.layers}{tokens}, route={self.route!r}"


def _check_eval_mode(model: nn.Module) -> None:
    if model.training:
        raise RuntimeError(
            f"{type(model).__name__} is in training mode: its split is exact only in "
            "evaluation mode; call model.eval()"
        )


def _capture(store: List[Tensor], module: nn.Module, args: tuple) -> None:
    store.append(args[0])


class PreLogits(nn.Module):
    """
    Penultimate features by timm's own head API: ``model.forward_head(model.forward_features(x),
    pre_logits=True)``, flattened per sample: the input of ``model.get_classifier()``.

    The model must stay in evaluation mode: the split that made this encoder was checked in that
    mode only.

    :param model: the timm classifier, registered as a submodule (``to(device)`` moves it)
    :param classifier: the name of ``model.get_classifier()`` in ``model.named_modules()``
    :param route: how the head was found, for messages and reports
    """

    def __init__(self, model: nn.Module, classifier: str, route: str = "") -> None:
        super().__init__()
        self.model = model
        self.layers = (classifier,)
        self.tokens: Tuple[Optional[Token], ...] = (None,)
        self.route = route

    def forward(self, x: Tensor) -> Tensor:
        """
        :param x: a batch the model accepts, e.g. images :math:`B \\times C \\times H \\times W`
        :return: features :math:`B \\times D`
        :raises RuntimeError: if the model is in training mode
        """
        _check_eval_mode(self.model)
        features = self.model.forward_features(x)
        return self.model.forward_head(features, pre_logits=True).flatten(1)

    def extra_repr(self) -> str:
        return f"classifier={self.layers[0]!r}, route={self.route!r}"
