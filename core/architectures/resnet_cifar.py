"""``resnet18``, ``resnet50``: the CIFAR variant in the pytorch-cifar key layout.

3x3 stride-1 stem (``conv1``, ``bn1``), no max-pool, stages ``layer1``..``layer4``
(BasicBlock [2,2,2,2] for resnet18, Bottleneck [3,4,6,3] for resnet50) with blocks
``layerS.B.conv1/bn1/conv2/bn2[/conv3/bn3]`` and projection ``layerS.B.shortcut.0`` (conv) /
``shortcut.1`` (BatchNorm), global 4x4 average pool and the head ``linear``. Checkpoints from
the reference code and from kuangliu/pytorch-cifar load as they are. ResNet-18 with 10 classes
has 11,173,962 trainable parameters.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.architectures import ARCHITECTURES


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class CifarResNet(nn.Module):
    def __init__(self, block: type[nn.Module], num_blocks: list[int], num_classes: int,
                 in_channels: int = 3):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, count: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (count - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # pytorch-cifar uses avg_pool2d(out, 4) for 32x32 inputs; adaptive pooling is identical
        # there and also accepts other resolutions (e.g. 64x64 Tiny ImageNet).
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _no_options(options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"unknown options {sorted(options)}")


@ARCHITECTURES.register("resnet18")
def build_resnet18(options: dict[str, Any], num_classes: int, image_shape) -> nn.Module:
    """CIFAR ResNet-18 (3x3 stem, no max-pool), pytorch-cifar state-dict keys; no options."""
    _no_options(options)
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes, image_shape[0])


@ARCHITECTURES.register("resnet50")
def build_resnet50(options: dict[str, Any], num_classes: int, image_shape) -> nn.Module:
    """CIFAR ResNet-50 (Bottleneck blocks [3, 4, 6, 3]), pytorch-cifar state-dict keys; no options."""
    _no_options(options)
    return CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes, image_shape[0])
