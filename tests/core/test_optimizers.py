"""Adam and AdamW recipes: the one training step follows torch's optimizers, the simulation
stays exact and differentiable through their state, and the parts that rely on SGD's
linearity (the low-rank engine, the input span) stand aside."""

from __future__ import annotations

import pytest
import torch

from core.architectures import model_for_recipe
from core.errors import RecipeError
from core.input_span import applies, input_span_basis
from core.lr_schedule import step_learning_rates
from core.recipe import parse_recipe
from core.simulation import (DisplacementObjective, SimulationPlan, leaf_state, objective_and_image_grad,
                             simulate)
from core.simulation_approx import per_step_objective_and_image_grad, truncated_objective_and_image_grad
from core.training_step import (ClipRule, OptimizerConfig, TrainState, adam_update, batch_slices,
                                set_model_mode, split_state_dict, training_step)

from .conftest import TEST_DEVICE, make_recipe, make_simudy, trained_pair

DEV = TEST_DEVICE

RECIPES = {
    "adam": dict(optimizer={"name": "adam", "lr": 0.01}),
    "adam-l2-betas-eps": dict(optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0.01,
                                         "betas": [0.8, 0.99], "eps": 1e-6}),
    "adamw-default-decay": dict(optimizer={"name": "adamw", "lr": 0.01}),
    "adamw-clip-cosine-per-step": dict(optimizer={"name": "adamw", "lr": 0.02, "weight_decay": 0.05},
                                       clip_grad_norm=0.5,
                                       lr_schedule={"name": "cosine", "interval": "step", "warmup": 2}),
    "adamw-convnet": dict(architecture="convnet", arch_options={"width": 4},
                          optimizer={"name": "adamw", "lr": 0.01}),
}
# Train-mode BatchNorm cancels the gradient of the bias before it, leaving float noise that
# Adam scales up to full steps: two correct implementations disagree there by construction,
# so this case is compared with the simulation (the same code), not with torch's optimizer.
SIMULATED_ONLY = {"adamw-convnet-bn-train": dict(architecture="convnet", arch_options={"width": 4},
                                                 model_mode="train", optimizer={"name": "adamw", "lr": 0.01})}


def _torch_optimizer(recipe, params):
    o = recipe.optimizer
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[o.name]
    return kind(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


@pytest.mark.parametrize("case", list(RECIPES))
def test_training_equals_torchs_adam_and_adamw(case):
    """core.train (the shared training step) against torch.optim.Adam / AdamW driven by the
    same per-step lrs, clipping with torch's clip_grad_norm_."""
    recipe = make_recipe(**RECIPES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe)
    model.load_state_dict(theta0)
    optimizer = _torch_optimizer(recipe, model.parameters())
    for lr, b in zip(step_learning_rates(recipe, len(x)), batch_slices(len(x), recipe.batch_size) * recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        if recipe.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
        optimizer.step()
    moved = False
    for name, value in model.state_dict().items():
        torch.testing.assert_close(thetaf[name], value, rtol=1e-5, atol=1e-6, msg=name)
        moved |= not torch.equal(value, theta0[name])
    assert moved


@pytest.mark.parametrize("case", list(RECIPES) + list(SIMULATED_ONLY))
def test_simulation_with_true_images_reproduces_an_adam_training(case):
    recipe = make_recipe(**{**RECIPES, **SIMULATED_ONLY}[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV)
    params, buffers = split_state_dict(model, {k: v.to(DEV) for k, v in theta0.items()})
    plan = SimulationPlan.for_recipe(model, recipe, len(x))
    clips = (ClipRule(recipe.clip_grad_norm, recipe.clip_grad_norm),) if recipe.clip_grad_norm else ()
    final = simulate(plan, leaf_state(TrainState(params, {}, buffers)), x.to(DEV), y.to(DEV), clips)
    assert final.steps == plan.num_steps and set(final.optimizer) == {"exp_avg", "exp_avg_sq"}
    for name, value in final.params.items():
        torch.testing.assert_close(value.detach().cpu(), thetaf[name], rtol=1e-5, atol=1e-6, msg=name)


def _setup(recipe, n, dtype=torch.float64, dead_unit: bool = False):
    theta0, thetaf, _, _ = trained_pair(recipe, n=n)
    if dead_unit:  # a hidden unit no image can open: its weights get exactly zero gradient
        theta0 = dict(theta0)
        theta0["layers.0.bias"] = theta0["layers.0.bias"].clone()
        theta0["layers.0.bias"][0] = -1e3
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV, dtype)
    params, buffers = split_state_dict(model, {k: v.to(DEV, dtype) for k, v in theta0.items()})
    paramsf, _ = split_state_dict(model, {k: v.to(DEV, dtype) for k, v in thetaf.items()})
    plan = SimulationPlan.for_recipe(model, recipe, n)
    return plan, DisplacementObjective(params, paramsf, tv_weight=0.01), TrainState(params, {}, buffers)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_image_gradient_through_adam_matches_finite_differences(name):
    """Through Adam's moments, bias correction and square root, with a dead hidden unit whose
    second moment stays exactly 0 (sqrt's slope there is taken as 0, not inf: no NaN)."""
    recipe = make_recipe(arch_options={"hidden": [8]}, image_shape=[1, 4, 4], epochs=2, batch_size=3,
                         normalize={"mean": [0.5], "std": [0.25]},
                         optimizer={"name": name, "lr": 0.02, "weight_decay": 0.01})
    plan, objective, state0 = _setup(recipe, n=6, dead_unit=True)
    y = (torch.arange(6) % 10).to(DEV)
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(DEV)
    leaf = x.clone().requires_grad_()
    objective_and_image_grad(plan, objective, state0, leaf, y, (ClipRule(0.5, 0.2),))
    analytic = leaf.grad.clone()
    assert torch.isfinite(analytic).all() and analytic.abs().sum() > 0
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (2, 0, 1, 3), (5, 0, 3, 2), (3, 0, 2, 2)]:
        values = []
        for sign in (1, -1):
            xp = x.clone()
            xp[idx] += sign * eps
            values.append(float(objective_and_image_grad(plan, objective, state0, xp.requires_grad_(), y,
                                                         (ClipRule(0.5, 0.2),)).loss))
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(numeric - float(analytic[idx])) <= 1e-5 + 1e-4 * abs(numeric), idx


def test_sqrt_slope_at_zero_is_zero_and_values_are_torchs():
    rule = OptimizerConfig(lr=0.1, name="adam")
    p = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.0, 3.0], dtype=torch.float64, requires_grad=True)
    new, _, sq = adam_update(p, g, None, None, 1, rule)
    (dg,) = torch.autograd.grad(new.sum(), [g])
    assert sq[0] == 0 and torch.isfinite(dg).all()
    torch.testing.assert_close(new.detach(), torch.tensor([1.0, 2.0 - 0.1 * 3 / (3 + 1e-8)], dtype=torch.float64))


@pytest.mark.parametrize("segment_steps", [1, 4])
def test_segments_carry_adams_state_exactly(segment_steps):
    """Segment checkpointing hands exp_avg, exp_avg_sq and the step count across segments."""
    recipe = make_recipe(optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.05})
    plan, objective, state0 = _setup(recipe, n=10)
    y = (torch.arange(10) % 10).to(DEV)
    x = torch.randn(10, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).to(DEV)
    grads, losses = [], []
    for seg in (0, segment_steps):
        leaf = x.clone().requires_grad_()
        losses.append(float(objective_and_image_grad(plan, objective, state0, leaf, y, (), seg).loss))
        grads.append(leaf.grad)
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


def test_approximate_gradients_run_through_adam():
    """A window as long as the run is the exact gradient; per-step differs but is finite."""
    recipe = make_recipe(optimizer={"name": "adam", "lr": 0.01})
    plan, objective, state0 = _setup(recipe, n=10)
    y = (torch.arange(10) % 10).to(DEV)
    x = torch.randn(10, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).to(DEV)
    exact, window, per_step = (x.clone().requires_grad_() for _ in range(3))
    objective_and_image_grad(plan, objective, state0, exact, y, ())
    truncated_objective_and_image_grad(plan, objective, state0, window, y, (), window=plan.num_steps)
    per_step_objective_and_image_grad(plan, objective, state0, per_step, y, ())
    torch.testing.assert_close(window.grad, exact.grad, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(per_step.grad).all() and not torch.allclose(per_step.grad, exact.grad)


def test_simudy_reconstructs_with_adamw_on_the_generic_engine():
    recipe = make_recipe(optimizer={"name": "adamw", "lr": 0.01})
    theta0, thetaf, _, _ = trained_pair(recipe)
    method = make_simudy(recipe, theta0, thetaf, iterations=6, input_span="auto")
    assert method.lowrank is None and method.span is None
    values = torch.stack([method.step() for _ in range(6)])
    assert torch.isfinite(values).all()
    with pytest.raises(RecipeError, match="trained with SGD without augmentation"):
        make_simudy(recipe, theta0, thetaf, input_span="on")


def test_the_input_span_is_sgds_only():
    recipe = make_recipe(optimizer={"name": "adamw", "lr": 0.01})
    model = model_for_recipe(recipe)
    assert not applies(model, recipe) and applies(model, make_recipe())
    theta0, thetaf, _, _ = trained_pair(recipe)
    params0, _ = split_state_dict(model, theta0)
    paramsf, _ = split_state_dict(model, thetaf)
    assert input_span_basis(model, recipe, params0, paramsf, 10) is None


def test_adamw_defaults_to_torchs_weight_decay():
    assert make_recipe(optimizer={"name": "adamw"}).optimizer.weight_decay == 0.01
    assert make_recipe(optimizer={"name": "adam"}).optimizer.weight_decay == 0.0
    assert make_recipe().optimizer.weight_decay == 0.0
    again = parse_recipe(make_recipe(optimizer={"name": "adamw"}).model_dump(mode="json"))
    assert again.optimizer.weight_decay == 0.01  # a stored recipe reads back the same


@pytest.mark.parametrize("optimizer, message", [
    ({"name": "adam", "momentum": 0.9}, "momentum and nesterov are SGD's: adam has betas instead"),
    ({"name": "sgd", "betas": [0.5, 0.9]}, "betas and eps are Adam's: sgd does not read them"),
    ({"name": "sgd", "eps": 1e-6}, "betas and eps are Adam's: sgd does not read them"),
    ({"name": "sgd", "nesterov": True}, "nesterov needs a momentum above 0"),
    ({"name": "adamw", "betas": [0.9, 1.0]}, "optimizer.betas: Value error, each beta must be in [0, 1)"),
    ({"name": "adagrad"}, "optimizer.name: Input should be 'sgd', 'adam' or 'adamw'"),
    ({"name": "adam", "amsgrad": True}, "optimizer.amsgrad: Extra inputs are not permitted"),
])
def test_a_bad_optimizer_is_one_readable_line(optimizer, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe({"architecture": "mlp", "image_shape": [3, 8, 8], "optimizer": optimizer})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_one_adam_step_keeps_its_state_per_parameter():
    recipe = make_recipe(optimizer={"name": "adam", "lr": 0.01})
    theta0, _, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe)
    params, buffers = split_state_dict(model, theta0)
    state = leaf_state(TrainState(params, {}, buffers))
    for _ in range(2):
        state, _ = training_step(model, leaf_state(state), x[:4], y[:4], OptimizerConfig.from_recipe(recipe))
    assert state.steps == 2
    assert set(state.optimizer["exp_avg"]) == set(state.optimizer["exp_avg_sq"]) == set(params)
