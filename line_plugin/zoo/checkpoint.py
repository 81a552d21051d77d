"""
Reading a checkpoint into a model: :func:`load_checkpoint`, the one entry point, builds the
architecture (:class:`~.densenet.DenseNet3` or a timm model), loads the parameters and returns a
:class:`~.model.ZooModel` with the input transform of the checkpoint's spec (timm's data config
where the spec has none).
"""

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..adapter import data_config
from .densenet import DenseNet3
from .model import ZooModel, input_transform


def _clean_state_dict(state: Dict) -> Dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if isinstance(value, Tensor) and value.is_floating_point():
            value = value.float()
        out[key] = value
    return out


def _read(path: Path) -> Tuple[Dict[str, Tensor], Dict]:
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist")
    ckpt = torch.load(path, map_location="cpu")
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        return _clean_state_dict(ckpt["state_dict"]), dict(ckpt.get("spec") or {})
    if isinstance(ckpt, dict) and all(isinstance(v, Tensor) for v in ckpt.values()):
        return _clean_state_dict(ckpt), {}
    raise ValueError(f"{path}: expected a state dict or a dict with 'state_dict'")


def _num_classes(state: Dict[str, Tensor], arch: str) -> int:
    if arch == "densenet_bc100":
        return state["fc.weight"].shape[0]
    import timm

    classifier = timm.models.get_pretrained_cfg_value(arch, "classifier") or "fc"
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    for name in names:
        if f"{name}.weight" in state:
            return state[f"{name}.weight"].shape[0]
    raise ValueError(f"Cannot infer the number of classes of {arch}; pass num_classes")


def load_checkpoint(
    arch: Optional[str],
    path: Union[str, Path],
    num_classes: Optional[int] = None,
    timm_kwargs: Optional[Dict] = None,
    name: Optional[str] = None,
    defaults: Optional[Dict] = None,
) -> ZooModel:
    """
    Build a model and load a checkpoint into it.

    The checkpoint may be a state dict, or a dict with ``state_dict`` and optionally ``spec``
    (``timm_kwargs``, ``mean``, ``std``, ``input_size``); a ``module.`` prefix is removed and
    floating-point tensors are cast to float32. Without ``mean`` and ``std`` in the spec, timm's
    data config of the model is used.

    :param arch: ``densenet_bc100`` or a timm model name; ``None``: the spec's ``arch``
    :param path: the checkpoint file
    :param num_classes: number of classes; default: read from the checkpoint
    :param timm_kwargs: extra arguments of :func:`timm.create_model` (default: the spec's)
    :param name: name to record; default ``arch``
    :param defaults: spec entries for a checkpoint whose spec lacks them (the checkpoint's own
        entries win)
    :return: the model in eval mode with its transform
    :raises FileNotFoundError: if the file is missing
    :raises ValueError: if ``arch`` is ``None`` and the spec names no architecture
    :raises RuntimeError: if the parameters do not match the architecture
    """
    state, spec = _read(Path(path))
    spec = {**(defaults or {}), **spec}
    if arch is None:
        if "arch" not in spec:
            raise ValueError(f"{str(path)!r} names no architecture in its spec; pass arch")
        arch = spec["arch"]
    return _build(arch, state, spec, num_classes, timm_kwargs, name or arch)


def _build(
    arch: str,
    state: Dict[str, Tensor],
    spec: Dict,
    num_classes: Optional[int],
    timm_kwargs: Optional[Dict],
    name: str,
) -> ZooModel:
    spec.setdefault("arch", arch)
    if num_classes is None:
        num_classes = _num_classes(state, arch)
    if arch == "densenet_bc100":
        model: nn.Module = DenseNet3(100, num_classes)
    else:
        import timm

        kwargs = dict(spec.get("timm_kwargs") or {}) if timm_kwargs is None else dict(timm_kwargs)
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    model.load_state_dict(state)
    model.eval()
    if "mean" not in spec or "std" not in spec:
        config = data_config(model)
        spec.setdefault("mean", tuple(config["mean"]))
        spec.setdefault("std", tuple(config["std"]))
        spec.setdefault("input_size", int(config["input_size"][-1]))
    spec.setdefault("input_size", 32)
    return ZooModel(name, model, input_transform(model, spec), spec)
