"""
The settings of the LINe paper (Ahn et al., CVPR 2023), as fractions pruned and an absolute
clipping threshold of the penultimate features.
"""

from typing import Dict, Optional

#: ``name -> {"p_w": ..., "p_a": ..., "clip": ...}`` for the paper's CIFAR-10 and CIFAR-100
#: DenseNet-BC-100 and ImageNet ResNet-50 experiments
PRESETS: Dict[str, Dict[str, Optional[float]]] = {
    "cifar10": {"p_w": 0.9, "p_a": 0.9, "clip": 1.0},
    "cifar100": {"p_w": 0.9, "p_a": 0.1, "clip": 1.0},
    "imagenet": {"p_w": 0.1, "p_a": 0.1, "clip": 0.8},
}


def preset_hyperparameters(name: str) -> Dict[str, Optional[float]]:
    """
    :param name: a key of :data:`PRESETS`
    :return: a copy of its hyperparameters
    :raises ValueError: for an unknown preset
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return dict(PRESETS[name])
