"""
A toy image classifier and image folders for the pipeline's tests: three classes of 8 x 8 RGB
images by their dominant colour, and grey images as outliers.
"""

from pathlib import Path
from typing import List

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

#: the class folders, sorted as an image folder sorts them: label 0 is red, 1 green, 2 blue
CLASSES = ["0_red", "1_green", "2_blue"]
#: the classifier's input transform
TRANSFORM = T.Compose([T.Resize((8, 8)), T.ToTensor()])


class Colours(nn.Module):
    """Mean colour, a ReLU layer of colour differences, a linear head: red, green or blue."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.body = nn.Linear(3, 6)
        self.fc = nn.Linear(6, 3)
        body = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [0, 1, -1], [-1, 0, 1]]
        head = [[2, 0, 0, 1, 0, -1], [0, 2, 0, -1, 1, 0], [0, 0, 2, 0, -1, 1]]
        with torch.no_grad():
            self.body.weight.copy_(torch.tensor(body, dtype=torch.float32))
            self.fc.weight.copy_(torch.tensor(head, dtype=torch.float32))
            self.body.bias.fill_(0.1)
            self.fc.bias.copy_(torch.tensor([0.1, -0.1, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.body(self.pool(x).flatten(1))))


def write_image(path: Path, colour: int, rng: np.random.Generator) -> Path:
    """an 8 x 8 image of the dominant ``colour`` (0, 1, 2), or grey for ``-1``"""
    pixels = rng.integers(0, 90, (8, 8, 3))
    if colour >= 0:
        pixels[..., colour] += 150
    else:
        pixels = np.repeat(pixels[..., :1] + 80, 3, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def class_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """``root`` with one sub-folder of ``per_class`` images per class of :data:`CLASSES`"""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            write_image(root / name / f"{i:03d}.png", label, rng)
    return root


def image_folder(root: Path, n: int, grey: int = 0, seed: int = 1) -> List[Path]:
    """``root`` with ``n`` images of the classes in turn and ``grey`` grey ones after them"""
    rng = np.random.default_rng(seed)
    colours = [i % 3 for i in range(n)] + [-1] * grey
    return [write_image(root / f"img{i:03d}.png", c, rng) for i, c in enumerate(colours)]
