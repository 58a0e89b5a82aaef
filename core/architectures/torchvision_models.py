"""``torchvision/<name>``: any torchvision classification model, with torchvision's own key
layout and its head replaced by one of ``num_classes`` outputs (``weights=None``: weights come
from the user's checkpoint, never from a hub)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from core.errors import RecipeError


def build(name: str, options: dict[str, Any], num_classes: int, image_shape) -> nn.Module:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise RecipeError(f"unknown torchvision classification model {name!r}")
    refused = sorted(set(options) & {"weights", "weights_backbone", "num_classes", "progress"})
    if refused:
        raise RecipeError(f"arch_options for torchvision/{name} may not set {', '.join(refused)} "
                          "(weights come from your checkpoints; num_classes from the recipe)")
    try:
        return tvm.get_model(name, weights=None, num_classes=num_classes, **options)
    except (TypeError, ValueError, AssertionError) as err:
        raise RecipeError(f"bad arch_options for torchvision/{name}: {err}") from None
