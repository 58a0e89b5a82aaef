"""Which of a model's tensors the recipe's training changed: its trainable parameters (by the
model's own naming), the ones the recipe declares ``frozen``, and the buffers (BatchNorm
statistics). Shared by the trainer, the simulation, the methods and the checkpoint checks, so
all of them split a state dict the same way."""

from __future__ import annotations

import torch.nn as nn

from core.errors import RecipeError
from core.recipe import Recipe
from core.types import Tensors


def split_state_dict(model: nn.Module, state: Tensors) -> tuple[Tensors, Tensors]:
    """Split a state dict into (trainable parameters, buffers) by the model's own naming."""
    param_names = {n for n, _ in model.named_parameters()}
    params = {k: v for k, v in state.items() if k in param_names}
    buffers = {k: v for k, v in state.items() if k not in param_names}
    return params, buffers


def check_frozen(model: nn.Module, recipe: Recipe) -> None:
    """Every ``frozen`` entry names parameters of the model, and some parameter is still
    trained: otherwise the recipe describes another network, or no training at all."""
    names = [n for n, _ in model.named_parameters()]
    for entry in recipe.frozen:
        if not any(n == entry or n.startswith(entry + ".") for n in names):
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            raise RecipeError(f"recipe.frozen: {entry!r} names no parameter of {recipe.architecture} "
                              f"(its parameters: {shown})")
    if names and all(recipe.is_frozen(n) for n in names):
        raise RecipeError("recipe.frozen freezes every parameter: nothing was trained")


def trainable_split(model: nn.Module, state: Tensors, recipe: Recipe) -> tuple[Tensors, Tensors, Tensors]:
    """(trained parameters, frozen parameters, buffers) of a state dict, by the recipe's
    ``frozen`` (checked against the model first)."""
    check_frozen(model, recipe)
    params, buffers = split_state_dict(model, state)
    trained = {k: v for k, v in params.items() if not recipe.is_frozen(k)}
    frozen = {k: v for k, v in params.items() if recipe.is_frozen(k)}
    return trained, frozen, buffers
