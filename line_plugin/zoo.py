"""
The shared trained CIFAR-10 classifiers: a DenseNet-BC-100 definition (:class:`DenseNet3`) matching
the DICE/LINe checkpoints, and :func:`load_model` / :func:`load_checkpoint`, which return a model
in eval mode together with its input transform; :func:`split_backbone` splits one into features
and linear head for the application (the command line and the evaluation).
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adapter import Split, data_config, default_transform, split_model
from .catalog import MODELS  # the table of the shared models, torch-free
from .data import default_models_dir

#: Input normalisation of the DICE DenseNet-BC-100 (pixels in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class _Bottleneck(nn.Module):
    # pre-activation: BN, ReLU, 1x1 conv to 4k, BN, ReLU, 3x3 conv to k; output concatenated
    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        inter = 4 * growth
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class _DenseBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, growth: int):
        super().__init__()
        self.layer = nn.Sequential(
            *[_Bottleneck(in_planes + i * growth, growth) for i in range(n)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class DenseNet3(nn.Module):
    """
    DenseNet-BC (bottleneck, compression 0.5) for 32x32 inputs, as in the DICE and LINe code: the
    "DenseNet-101" of their papers with ``depth=100, growth_rate=12``. Parameter names match the
    checkpoints of both.

    ``forward`` is ``fc(features(x))``; :meth:`features` is BatchNorm, ReLU and global average
    pooling of :meth:`feature_maps`: 342 non-negative values for depth 100.

    :param depth: network depth, :math:`6n + 4`
    :param num_classes: number of classes
    :param growth_rate: channels added per bottleneck unit
    :param reduction: channel compression of the transitions
    """

    def __init__(
        self,
        depth: int = 100,
        num_classes: int = 10,
        growth_rate: int = 12,
        reduction: float = 0.5,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        self.block1 = _DenseBlock(n, planes, growth_rate)
        planes += n * growth_rate
        self.trans1 = _Transition(planes, int(math.floor(planes * reduction)))
        planes = int(math.floor(planes * reduction))
        self.block2 = _DenseBlock(n, planes, growth_rate)
        planes += n * growth_rate
        self.trans2 = _Transition(planes, int(math.floor(planes * reduction)))
        planes = int(math.floor(planes * reduction))
        self.block3 = _DenseBlock(n, planes, growth_rate)
        planes += n * growth_rate
        self.bn1 = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)
        #: size of the penultimate features
        self.num_features = planes

    def feature_maps(self, x: Tensor) -> Tensor:
        """
        :param x: images, :math:`B \\times 3 \\times 32 \\times 32`
        :return: activations after the final BatchNorm and ReLU, :math:`B \\times 342 \\times 8
            \\times 8` for depth 100
        """
        out = self.trans1(self.block1(self.conv1(x)))
        out = self.trans2(self.block2(out))
        return F.relu(self.bn1(self.block3(out)))

    def features(self, x: Tensor) -> Tensor:
        """
        :param x: images, :math:`B \\times 3 \\times 32 \\times 32`
        :return: penultimate features, :math:`B \\times 342` for depth 100
        """
        return F.adaptive_avg_pool2d(self.feature_maps(x), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


@dataclass
class ZooModel:
    """
    A trained classifier with its input transform.

    :param name: the name it was loaded by
    :param model: the classifier, in eval mode, on the CPU
    :param transform: PIL image to normalised tensor (ToTensor, Normalize; Resize if needed)
    :param spec: architecture and training facts (``arch``, ``mean``, ``std``, ``input_size``, ...)
    """

    name: str
    model: nn.Module
    transform: Callable
    spec: Dict = field(default_factory=dict)


_DICE_SPEC = {
    "arch": "densenet_bc100",
    "mean": CIFAR10_MEAN,
    "std": CIFAR10_STD,
    "input_size": 32,
    "test_acc_jpeg": 0.8227,
}


def input_transform(model: nn.Module, spec: Dict) -> Callable:
    """
    The transform of a zoo model: any PIL image resized (shorter side, bilinear) and center-cropped
    to the model's input size unless it has that size, then normalised; built by
    :func:`line_plugin.default_transform`. On 32 x 32 CIFAR images it is ``ToTensor`` and
    ``Normalize`` alone.

    :param model: the classifier
    :param spec: its ``mean``, ``std`` and ``input_size`` (side length)
    :return: PIL image to normalised :math:`3 \\times S \\times S` tensor
    """
    size = int(spec["input_size"])
    return default_transform(
        model,
        input_size=(3, size, size),
        mean=tuple(spec["mean"]),
        std=tuple(spec["std"]),
        crop_pct=1.0,
        crop_mode="center",
        interpolation="bilinear",
    )


def split_backbone(model: ZooModel) -> Split:
    """
    The classifier as encoder and linear head, by :func:`line_plugin.adapter.split_model`,
    checked on a fixed random batch at the model's input size on the model's device.

    :param model: a loaded model (its ``spec`` gives the input size)
    :return: ``encoder, weight, bias`` with ``encoder(x) @ weight.T + bias == model(x)``;
        ``weight`` and ``bias`` are float32 copies on the model's device
    :raises ValueError: if no exact linear head is found
    """
    size = int(model.spec.get("input_size", 32))
    device = next(model.model.parameters()).device
    probe = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    return split_model(model.model, probe=probe.to(device))


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
    arch: str,
    path: Union[str, Path],
    num_classes: Optional[int] = None,
    timm_kwargs: Optional[Dict] = None,
    name: Optional[str] = None,
) -> ZooModel:
    """
    Build a model and load a checkpoint into it.

    The checkpoint may be a state dict, or a dict with ``state_dict`` and optionally ``spec``
    (``timm_kwargs``, ``mean``, ``std``, ``input_size``); a ``module.`` prefix is removed and
    floating-point tensors are cast to float32. Without ``mean`` and ``std`` in the spec, timm's
    data config of the model is used.

    :param arch: ``densenet_bc100`` or a timm model name
    :param path: the checkpoint file
    :param num_classes: number of classes; default: read from the checkpoint
    :param timm_kwargs: extra arguments of :func:`timm.create_model` (default: the spec's)
    :param name: name to record; default ``arch``
    :return: the model in eval mode with its transform
    :raises FileNotFoundError: if the file is missing
    :raises RuntimeError: if the parameters do not match the architecture
    """
    state, spec = _read(Path(path))
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


def load_model(
    name: str = "densenet_bc100", models_dir: Optional[Union[str, Path]] = None
) -> ZooModel:
    """
    Load one of the shared trained classifiers (see :data:`MODELS`).

    :param name: a key of :data:`MODELS`
    :param models_dir: the models folder; default :func:`~line_plugin.data.default_models_dir`
    :return: a :class:`ZooModel`: the model in eval mode, its transform and its spec
    :raises KeyError: for an unknown name (the message lists the known ones)
    :raises FileNotFoundError: if the models folder or the file is missing
    """
    if name not in MODELS:
        raise KeyError(f"Unknown model {name!r}; known models: {', '.join(MODELS)}")
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    path = root / MODELS[name][0]
    state, spec = _read(path)
    if name == "densenet_bc100_dice":
        spec = {**_DICE_SPEC, **spec}
    return _build(spec.get("arch", "densenet_bc100"), state, spec, None, None, name)
