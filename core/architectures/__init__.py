"""Architectures by stable name.

``build_model(name, options, num_classes, image_shape)`` returns an ``nn.Module`` whose
``state_dict()`` layout is documented in each module. ``torchvision/<name>`` is resolved
dynamically for any torchvision classification model.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from core.errors import RecipeError
from core.registry import Registry

ModelFactory = Callable[[dict[str, Any], int, tuple[int, int, int]], nn.Module]
ARCHITECTURES: Registry[ModelFactory] = Registry("architecture")

from core.architectures import convnet, mlp, resnet_cifar, torchvision_models  # noqa: E402,F401


def build_model(name: str, options: dict[str, Any] | None, num_classes: int,
                image_shape: tuple[int, int, int]) -> nn.Module:
    options = dict(options or {})
    if name.startswith("torchvision/"):
        return torchvision_models.build(name.split("/", 1)[1], options, num_classes, image_shape)
    try:
        factory = ARCHITECTURES.get(name)
    except KeyError as err:
        raise RecipeError(f"{err.args[0]}; or torchvision/<model name>") from None
    try:
        return factory(options, num_classes, tuple(image_shape))
    except TypeError as err:
        raise RecipeError(f"bad arch_options for {name}: {err}") from None


def architecture_names() -> list[str]:
    return ARCHITECTURES.names() + ["torchvision/<name>"]
