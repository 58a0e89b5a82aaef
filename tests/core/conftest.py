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


# -- references and checks shared by the exactness tests ------------------------------------
def torch_optimizer(recipe: Recipe, params):
    """The recipe's optimizer as torch builds it (single-tensor code path, the one whose order
    of operations the shared training step follows)."""
    o = recipe.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.nesterov, foreach=False)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[o.name]
    return kind(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, foreach=False)


def torch_training(recipe: Recipe, theta0, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The recipe's training written with torch's own module, optimizer and clip_grad_norm_
    (frozen parameters with requires_grad off), at the recipe's per-step lrs: the reference
    ``core.train`` must equal."""
    from core.lr_schedule import step_learning_rates
    from core.training_step import batch_slices, set_model_mode

    model = set_model_mode(model_for_recipe(recipe), recipe)
    model.load_state_dict(theta0)
    for name, p in model.named_parameters():
        p.requires_grad_(not recipe.is_frozen(name))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch_optimizer(recipe, trained)
    steps = batch_slices(len(x), recipe.batch_size) * recipe.epochs
    for lr, b in zip(step_learning_rates(recipe, len(x)), steps):
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        if recipe.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(trained, recipe.clip_grad_norm)
        optimizer.step()
    return model.state_dict()


def objective_setup(recipe: Recipe, theta0, thetaf, n: int, dtype=torch.float64):
    """(plan, objective, state0) of a SimuDy objective on ``n`` images, in ``dtype``."""
    from core.parameters import trainable_split
    from core.simulation import DisplacementObjective, SimulationPlan
    from core.training_step import TrainState, set_model_mode

    def cast(state):
        return {k: v.to(TEST_DEVICE, dtype) if v.is_floating_point() else v.to(TEST_DEVICE)
                for k, v in state.items()}

    model = set_model_mode(model_for_recipe(recipe), recipe).to(TEST_DEVICE, dtype)
    params, frozen, buffers = trainable_split(model, cast(theta0), recipe)
    paramsf, _, _ = trainable_split(model, cast(thetaf), recipe)
    plan = SimulationPlan.for_recipe(model, recipe, n)
    return (plan, DisplacementObjective(params, paramsf, tv_weight=0.01),
            TrainState(params, {}, buffers, frozen=frozen))


def assert_image_gradient_matches_finite_differences(plan, objective, state0, x, y, clips, coords,
                                                     eps: float = 1e-6) -> torch.Tensor:
    """Central differences of the SimuDy loss at ``coords`` of the images ``x`` (float64)
    against the image gradient the simulation computes; returns that gradient."""
    from core.simulation import objective_and_image_grad

    leaf = x.clone().requires_grad_()
    objective_and_image_grad(plan, objective, state0, leaf, y, clips)
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    for idx in coords:
        values = []
        for sign in (1, -1):
            xp = x.clone()
            xp[idx] += sign * eps
            values.append(float(objective_and_image_grad(plan, objective, state0, xp.requires_grad_(),
                                                         y, clips).loss))
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(numeric - float(leaf.grad[idx])) <= 1e-5 + 1e-4 * abs(numeric), idx
    return leaf.grad
