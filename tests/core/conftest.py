"""Tiny models and data for fast engine tests, on the CPU unless ``SIMUDY_TEST_DEVICE=cuda``
asks for the GPU (the exactness tests then check the CUDA path: simulation == training, the
finite-difference gradient, segment checkpointing, bit-exact resume, bf16 against fp32)."""

from __future__ import annotations

import os

import pytest
import torch

from core.architectures import model_for_recipe
from core.execution import Execution
from core.methods import parse_settings
from core.methods.base import MethodInputs
from core.methods.simudy import SimuDy
from core.recipe import Recipe
from core.train import train

TEST_DEVICE = torch.device(os.environ.get("SIMUDY_TEST_DEVICE", "cpu"))
EXECUTION = Execution(device=TEST_DEVICE.type)
if TEST_DEVICE.type == "cuda":  # bit-exact resume needs deterministic kernels
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False

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
    thetaf = train(model_for_recipe(recipe), theta0, x, y, recipe, seed=seed, device=TEST_DEVICE)
    return theta0, thetaf, x, y


@pytest.fixture
def mlp_case():
    recipe = make_recipe()
    return (recipe, *trained_pair(recipe))


def simudy_settings(**kw):
    base = {"num_images": 10, "iterations": 6, "progress_every": 2}
    base.update(kw)
    return parse_settings(base)


def make_simudy(recipe, theta0, thetaf, execution: Execution = EXECUTION, **settings) -> SimuDy:
    return SimuDy(MethodInputs(recipe=recipe, thetaf=thetaf, theta0=theta0),
                  simudy_settings(**settings), execution)
