"""Architectures by stable name.

``build_model(name, options, num_classes, image_shape)`` returns an ``nn.Module`` whose
``state_dict()`` layout is documented in each module. ``torchvision/<name>`` is resolved
dynamically for any torchvision classification model. ``model_for_recipe`` builds the model a
recipe names (on the ``meta`` device, no memory and no initialisation work, it gives the
key/shape/dtype layout a checkpoint must have: ``core.checkpoints.check_manifest``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn

from core.errors import RecipeError
from core.registry import Registry

if TYPE_CHECKING:
    from core.recipe import Recipe

ModelFactory = Callable[[dict[str, Any], int, tuple[int, int, int]], nn.Module]
ARCHITECTURES: Registry[ModelFactory] = Registry("architecture")

from core.architectures import convnet, mlp, resnet_cifar, torchvision_models, vit  # noqa: E402,F401


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
    except (TypeError, ValueError, OverflowError) as err:
        raise RecipeError(f"bad arch_options for {name}: {err}") from None
    except RuntimeError as err:  # e.g. a layer of zero width
        raise RecipeError(f"bad arch_options for {name}: {str(err).splitlines()[0][:200]}") from None


def model_for_recipe(recipe: "Recipe") -> nn.Module:
    return build_model(recipe.architecture, recipe.arch_options, recipe.num_outputs,
                       tuple(recipe.image_shape))


def parameter_count(recipe: "Recipe") -> int:
    """Parameters of the recipe's model, frozen ones included (built on the meta device)."""
    with torch.device("meta"):
        model = model_for_recipe(recipe)
    return sum(p.numel() for p in model.parameters())


def architecture_names() -> list[str]:
    return ARCHITECTURES.names() + ["torchvision/<name>"]
