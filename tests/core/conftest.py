"""Tiny models and data for fast engine tests on the CPU."""

from __future__ import annotations

import pytest
import torch

from core.recipe import Recipe
from core.simudy import model_for_recipe
from core.trainer import train

torch.set_num_threads(2)


def make_recipe(**overrides) -> Recipe:
    base = {"architecture": "mlp", "arch_options": {"hidden": [32, 16]}, "num_classes": 10,
            "image_shape": [3, 8, 8], "epochs": 3, "batch_size": 4,
            "optimizer": {"lr": 0.05}}
    base.update(overrides)
    return Recipe.model_validate(base)


def trained_pair(recipe: Recipe, n: int = 10, seed: int = 0):
    """(theta0, thetaf, x, y) for a real training run of ``recipe`` on random images."""
    torch.manual_seed(seed)
    model = model_for_recipe(recipe)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(n, *recipe.image_shape)
    y = torch.arange(n) % recipe.num_classes
    thetaf = train(model_for_recipe(recipe), theta0, x, y, recipe, seed=seed)
    return theta0, thetaf, x, y


@pytest.fixture
def mlp_case():
    recipe = make_recipe()
    return (recipe, *trained_pair(recipe))
