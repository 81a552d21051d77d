"""
What a timm model declares about itself: its config, classifier layers and input.

The one place that reads timm's ``pretrained_cfg`` (``default_cfg`` in older releases) and the
attributes timm models carry beside it. Other models declare nothing here, and get empty answers.
"""

from typing import Iterator, List, Optional, Tuple

from torch import nn


def timm_cfg(model: nn.Module) -> Optional[dict]:
    """
    The model's timm config: ``pretrained_cfg``, or ``default_cfg`` in older timm releases.

    :param model: any model
    :return: the config dict, or ``None`` if the model has none
    """
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    return cfg if isinstance(cfg, dict) else None


def is_encoder_only(model: nn.Module) -> bool:
    """
    Whether the model is a timm encoder without a classifier (no ``get_classifier``).

    :param model: any model
    :return: ``True`` for timm models that have no classifier at all (``*_enc`` models)
    """
    cfg = timm_cfg(model)
    return cfg is not None and "classifier" in cfg and not hasattr(model, "get_classifier")


def classifier_layers(model: nn.Module) -> List[str]:
    """
    The ``nn.Linear`` and ``nn.Conv2d`` layers named by ``pretrained_cfg['classifier']``.

    timm names one module or a tuple of them (distilled and multi-head models); a name may be a
    wrapper (``head``, ``head.fc``) whose linear layers are returned. Names the model lacks are
    skipped.

    :param model: any model
    :return: layer names as in ``model.named_modules()``, empty for non-timm models
    """
    names = (timm_cfg(model) or {}).get("classifier") or ()
    layers = []
    for name in [names] if isinstance(names, str) else names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        for sub_name, sub in module.named_modules(prefix=name):
            if isinstance(sub, (nn.Linear, nn.Conv2d)):
                layers.append(sub_name)
    return layers


def declared_channels(model: nn.Module) -> Iterator[int]:
    """
    The input channels the model declares: its ``in_chans``, then ``pretrained_cfg``'s.

    timm keeps the config's ``input_size`` at 3 channels even for a model created with
    ``in_chans=1``; the model's own ``in_chans`` is right in both cases.

    :param model: any model
    :return: channel counts, most trusted first (possibly repeated)
    """
    own = getattr(model, "in_chans", None)
    if isinstance(own, int):
        yield own
    size = tuple((timm_cfg(model) or {}).get("input_size") or ())
    if len(size) == 3:
        yield int(size[0])


def declared_sizes(model: nn.Module) -> Iterator[Tuple[int, int]]:
    """
    The image sizes the model declares, its own first.

    A model created with another ``img_size`` keeps the default in its ``pretrained_cfg``, so its
    own attributes come before the config's ``input_size`` and ``test_input_size``: its
    ``patch_embed.img_size``, then the first ``img_size`` or ``image_size`` among the model and
    its submodules, in registration order (MLP-Mixer keeps it in ``stem``).

    :param model: any model
    :return: (height, width) pairs, most trusted first (possibly repeated)
    """
    cfg = timm_cfg(model) or {}
    own = (
        getattr(module, attr, None)
        for module in model.modules()
        for attr in ("img_size", "image_size")
    )
    for size in (
        getattr(getattr(model, "patch_embed", None), "img_size", None),
        next((size for size in own if _pair(size) is not None), None),
        tuple(cfg.get("input_size") or ())[1:],
        tuple(cfg.get("test_input_size") or ())[1:],
    ):
        pair = _pair(size)
        if pair is not None:
            yield pair


def _pair(size: object) -> Optional[Tuple[int, int]]:
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2:
        if all(isinstance(s, int) and s > 0 for s in size):
            return size[0], size[1]
    return None
