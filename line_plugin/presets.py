"""
The settings of the LINe paper (Ahn et al., CVPR 2023), as fractions pruned and an absolute
clipping threshold of the penultimate features.
"""

from typing import Dict, Optional, Union

#: ``name -> {"p_w": ..., "p_a": ..., "clip": ...}`` for the paper's CIFAR-10 and CIFAR-100
#: DenseNet-BC-100 and ImageNet ResNet-50 experiments
PRESETS: Dict[str, Dict[str, Optional[Union[float, None]]]] = {
    "cifar10": {"p_w": 0.9, "p_a": 0.9, "clip": 1.0},
    "cifar100": {"p_w": 0.9, "p_a": 0.1, "clip": 1.0},
    "imagenet": {"p_w": 0.1, "p_a": 0.1, "clip": 0.8},
}
