"""``convnet``: a small CNN for fast tests and demos.

conv(3x3, width) -> [BatchNorm] -> ReLU -> avgpool2 -> conv(3x3, 2*width) -> ReLU ->
global avgpool -> linear. State dict: ``features.0.weight/bias``; with ``batchnorm`` (default
true) ``features.1.{weight,bias,running_mean,running_var,num_batches_tracked}``; the second
conv; ``head.weight/bias``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from core.architectures import ARCHITECTURES


class ConvNet(nn.Module):
    def __init__(self, channels: int, width: int, num_classes: int, batchnorm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(width))
        layers += [nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1),
                   nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@ARCHITECTURES.register("convnet")
def build(options: dict[str, Any], num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
    """A small convolutional network for tests and quick audits. Options: width (default 16),
    batchnorm (default true)."""
    width = options.pop("width", 16)
    batchnorm = options.pop("batchnorm", True)
    if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 4096:
        raise TypeError("width must be an integer from 1 to 4096")
    if not isinstance(batchnorm, bool):
        raise TypeError("batchnorm must be true or false")
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    return ConvNet(image_shape[0], width, num_classes, batchnorm)
