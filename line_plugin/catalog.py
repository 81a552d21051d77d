"""
The names of the shared material, without torch: the trained models (:data:`MODELS`, loaded by
:func:`line_plugin.zoo.load_model`) and the out-of-distribution sets (:data:`OOD_SETS`, read by
:func:`line_plugin.data.ood_set`).

The library and the command line both import these tables from here, so that ``line-ood
--help`` lists the names without loading torch, and each name is written once.
"""

from typing import Dict, Tuple

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

#: Out-of-distribution sets for CIFAR-10: key -> ``npz`` file relative to the data folder.
OOD_SETS: Dict[str, str] = {
    "dtd": "ood32/dtd10_32.npz",
    "imagenet": "ood32/imagenet_sample_32.npz",
    "mnist": "ood32/mnist_test_32.npz",
    "fashion_mnist": "ood32/fashion_mnist_test_32.npz",
}
