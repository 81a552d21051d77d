"""
The settings of the LINe paper (Ahn et al., CVPR 2023), as fractions pruned and an absolute
clipping threshold of the penultimate features, and ``"auto"``: chosen from the training data
(:mod:`line_plugin.plugin.auto`).
"""

from typing import Dict, Iterable, Optional

#: ``name -> {"p_w": ..., "p_a": ..., "clip": ...}`` for the paper's CIFAR-10 and CIFAR-100
#: DenseNet-BC-100 and ImageNet ResNet-50 experiments
PRESETS: Dict[str, Dict[str, Optional[float]]] = {
    "cifar10": {"p_w": 0.9, "p_a": 0.9, "clip": 1.0},
    "cifar100": {"p_w": 0.9, "p_a": 0.1, "clip": 1.0},
    "imagenet": {"p_w": 0.1, "p_a": 0.1, "clip": 0.8},
}


#: the preset that chooses from the training data (:mod:`line_plugin.plugin.auto`)
AUTO = "auto"
#: every preset name
PRESET_NAMES = (AUTO, *PRESETS)


def check_preset(name: str) -> str:
    """
    :param name: ``"auto"`` or a key of :data:`PRESETS`
    :return: ``name``
    :raises ValueError: for an unknown preset
    """
    if name != AUTO and name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESET_NAMES)}")
    return name


def resolve_preset(preset: Optional[str], given: Iterable[str]) -> Optional[str]:
    """
    The preset a detector is made with: ``"auto"`` when neither a preset nor a hyperparameter
    is given.

    :param preset: the preset asked for, or ``None``
    :param given: the names of the hyperparameters given explicitly
    :return: ``preset``, ``"auto"``, or ``None`` (hyperparameters without a preset)
    :raises ValueError: for an unknown preset, or ``"auto"`` with hyperparameters
    """
    given = sorted(set(given))
    if preset is None:
        return None if given else AUTO
    if check_preset(preset) == AUTO and given:
        raise ValueError(
            f"preset 'auto' chooses p_a, p_w and clip itself: drop {', '.join(given)} or name "
            f"a paper preset ({', '.join(PRESETS)})"
        )
    return preset


def preset_hyperparameters(name: str) -> Dict[str, Optional[float]]:
    """
    :param name: a key of :data:`PRESETS`
    :return: a copy of its hyperparameters
    :raises ValueError: for an unknown preset
    """
    if name not in PRESETS:
        check_preset(name)
        raise ValueError(f"preset {name!r} has no fixed hyperparameters: it is chosen by fit()")
    return dict(PRESETS[name])
