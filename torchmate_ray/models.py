"""Small reference models, referenced from configs as ``torchmate_ray.models.<Name>`` (or the bare name)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LeNet5BNMaxPool(nn.Module):
    """LeNet-5 with batch norm and max pooling, for ``in_channels`` x ``image_size`` x ``image_size`` images.

    Two 5x5 conv blocks (6 and 16 channels, each BN -> ReLU -> 2x2 max pool), then 120 -> 84 -> classes.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for LeNet5 (needs at least 16)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """A multilayer perceptron: inputs flattened, ``hidden`` layers of Linear -> activation -> dropout.

    Example: ``{"name": "torchmate_ray.models.MLP", "cfg": {"in_features": 784, "hidden": [128], "out_features": 10}}``.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (128,),
                 activation: str = "ReLU", dropout: float = 0.0):
        super().__init__()
        if not hasattr(nn, activation):
            raise ValueError(f"activation {activation!r} is not a torch.nn module")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), getattr(nn, activation)()]
            layers += [nn.Dropout(dropout)] if dropout else []
            width = size
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
