"""
The shared trained CIFAR-10 classifiers (:data:`MODELS`), loaded by name with
:func:`load_model` from the shared models folder.
"""

from pathlib import Path
from typing import Optional, Union

from ..catalog import MODELS  # the table of the shared models, torch-free
from ..data import default_models_dir
from .checkpoint import load_checkpoint
from .model import ZooModel

#: Input normalisation of the DICE DenseNet-BC-100 (pixels in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


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
