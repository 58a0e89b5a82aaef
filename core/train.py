"""Real training: theta0 -> thetaf with a recipe, through the same ``training_step`` the
simulation uses. Serves ``simudy train`` (making audit targets) and pretraining a theta0."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn as nn

from core.losses import get_loss
from core.lr_schedule import step_learning_rates
from core.recipe import Recipe
from core.parameters import trainable_split
from core.training_step import (OptimizerConfig, TrainState, augment_batch, batch_slices, epoch_orders,
                                recipe_clip_rules, set_model_mode, training_step)
from core.types import Tensors


def train(model: nn.Module, theta0: Tensors, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, *,
          seed: int = 0, device: torch.device | str = "cpu",
          on_epoch: Callable[[int, float], None] | None = None) -> Tensors:
    """Train from ``theta0`` on normalised images ``x`` (N,C,H,W) and labels ``y``; return the
    full final state dict (parameters and buffers) on the CPU."""
    device = torch.device(device)
    model = set_model_mode(model.to(device), recipe)
    params, frozen, buffers = trainable_split(model, {k: v.to(device) for k, v in theta0.items()}, recipe)
    state = TrainState({k: v.detach().clone().requires_grad_() for k, v in params.items()}, {},
                       {k: v.clone() for k, v in buffers.items()}, frozen=frozen)
    x, y = x.to(device), y.to(device)
    rule = OptimizerConfig.from_recipe(recipe)
    lrs = iter(step_learning_rates(recipe, len(x)))
    clips = recipe_clip_rules(recipe)
    generator = torch.Generator().manual_seed(seed)
    for epoch, order in enumerate(epoch_orders(len(x), recipe.epochs, recipe.shuffle, generator)):
        order = order.to(device)
        losses = []
        for batch in batch_slices(len(x), recipe.batch_size):
            idx = order[batch]
            xb = augment_batch(x[idx].cpu(), generator).to(device) if recipe.augment else x[idx]
            state, loss = training_step(model, state, xb, y[idx], replace(rule, lr=next(lrs)), clips=clips)
            state = state.detached()
            state.params = {k: v.requires_grad_() for k, v in state.params.items()}
            losses.append(float(loss))
        if on_epoch:
            on_epoch(epoch, sum(losses) / len(losses))
    out = {k: v.detach().cpu() for k, v in {**state.params, **state.frozen, **state.buffers}.items()}
    return {k: out[k] for k in theta0}  # keep theta0's key order


@torch.no_grad()
def accuracy(model: nn.Module, state: Tensors, x: torch.Tensor, y: torch.Tensor, *,
             device: torch.device | str = "cpu", batch_size: int = 500, loss: str = "cross_entropy") -> float:
    """Fraction of ``x`` the model classifies as ``y`` (``loss``: the recipe's, which says how
    outputs become a class)."""
    device = torch.device(device)
    predict = get_loss(loss).predict
    model = model.to(device).eval()
    model.load_state_dict(state)
    correct = 0
    for batch in batch_slices(len(x), batch_size):
        correct += int((predict(model(x[batch].to(device))).cpu() == y[batch]).sum())
    return correct / len(x)
