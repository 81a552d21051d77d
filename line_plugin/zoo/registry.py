"""
The shared trained CIFAR-10 classifiers (:data:`MODELS`), loaded by name with
:func:`load_model` from the shared models folder.
"""

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from ..data import default_models_dir
from .checkpoint import load_checkpoint
from .model import ZooModel

#: Input normalisation of the DICE DenseNet-BC-100 (pixels in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

#: Known model names -> (file relative to the models folder, one-line description).
MODELS: Dict[str, Tuple[str, str]] = {
    "densenet_bc100": (
        "cifar10_jpeg/densenet_bc100.pt",
        "DenseNet-BC-100 (DICE/LINe 'DenseNet-101'), fine-tuned on JPEG CIFAR-10; 90.7 %",
    ),
    "densenet_bc100_dice": (
        "dice_densenet_bc100/cifar10.pth.tar",
        "DenseNet-BC-100, the original DICE CIFAR-10 checkpoint (lossless training); 82.3 %",
    ),
    "resnet18": (
        "cifar10_jpeg/timm_resnet18.pt",
        "timm resnet18, trained on JPEG CIFAR-10; 84.3 %",
    ),
    "vit_tiny": (
        "cifar10_jpeg/timm_vit_tiny_patch4_32.pt",
        "timm vit_tiny (patch 4, 32 px), trained on JPEG CIFAR-10; 78.3 %",
    ),
    "convnext_atto": (
        "cifar10_jpeg/timm_convnext_atto.pt",
        "timm convnext_atto, trained on JPEG CIFAR-10; 72.7 %",
    ),
}

#: the spec of the original DICE checkpoint, which carries none
_DICE_SPEC = {
    "arch": "densenet_bc100",
    "mean": CIFAR10_MEAN,
    "std": CIFAR10_STD,
    "input_size": 32,
    "test_acc_jpeg": 0.8227,
}


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
    defaults = _DICE_SPEC if name == "densenet_bc100_dice" else {"arch": "densenet_bc100"}
    return load_checkpoint(None, path, name=name, defaults=defaults)
