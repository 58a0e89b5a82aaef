"""Adam and AdamW recipes: the one training step follows torch's optimizers, the simulation
stays exact and differentiable through their state, and the parts that rely on SGD's
linearity (the low-rank engine, the input span) stand aside."""

from __future__ import annotations

import pytest
import torch

from core.architectures import model_for_recipe
from core.errors import RecipeError
from core.input_span import applies, input_span_basis
from core.parameters import split_state_dict
from core.recipe import parse_recipe
from core.simulation import SimulationPlan, leaf_state, objective_and_image_grad, simulate
from core.simulation_approx import per_step_objective_and_image_grad, truncated_objective_and_image_grad
from core.training_step import (ClipRule, OptimizerConfig, TrainState, adam_update, recipe_clip_rules,
                                set_model_mode, training_step)

from .conftest import (TEST_DEVICE, assert_image_gradient_matches_finite_differences, make_recipe,
                       make_simudy, objective_setup, torch_training, trained_pair)

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


@pytest.mark.parametrize("case", list(RECIPES))
def test_training_equals_torchs_adam_and_adamw(case):
    """core.train (the shared training step) against torch.optim.Adam / AdamW driven by the
    same per-step lrs, clipping with torch's clip_grad_norm_. The same order of operations,
    so on the CPU the same bits, except under clipping: torch takes the global norm as the norm
    of the per-tensor norms, which rounds differently."""
    recipe = make_recipe(**RECIPES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    reference = torch_training(recipe, theta0, x, y)
    assert any(not torch.equal(v, theta0[k]) for k, v in reference.items())
    for name, value in reference.items():
        if DEV.type == "cpu" and not recipe.clip_grad_norm:
            assert torch.equal(thetaf[name], value), name
        else:
            torch.testing.assert_close(thetaf[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("case", list(RECIPES) + list(SIMULATED_ONLY))
def test_simulation_with_true_images_reproduces_an_adam_training(case):
    recipe = make_recipe(**{**RECIPES, **SIMULATED_ONLY}[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV)
    params, buffers = split_state_dict(model, {k: v.to(DEV) for k, v in theta0.items()})
    plan = SimulationPlan.for_recipe(model, recipe, len(x))
    final = simulate(plan, leaf_state(TrainState(params, {}, buffers)), x.to(DEV), y.to(DEV),
                     recipe_clip_rules(recipe))
    assert final.steps == plan.num_steps and set(final.optimizer) == {"exp_avg", "exp_avg_sq"}
    for name, value in final.params.items():
        torch.testing.assert_close(value.detach().cpu(), thetaf[name], rtol=1e-5, atol=1e-6, msg=name)


def _setup(recipe, n, dead_unit: bool = False):
    theta0, thetaf, _, _ = trained_pair(recipe, n=n)
    if dead_unit:  # a hidden unit no image can open: its weights get exactly zero gradient
        theta0 = {**theta0, "layers.0.bias": theta0["layers.0.bias"].clone()}
        theta0["layers.0.bias"][0] = -1e3
    return objective_setup(recipe, theta0, thetaf, n)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_image_gradient_through_adam_matches_finite_differences(name):
    """Through Adam's moments, bias correction and square root, with a dead hidden unit whose
    second moment stays exactly 0 (sqrt's slope there is taken as 0, not inf: no NaN). Adam's
    weight decay is added to the gradient, which would make it nonzero: none here."""
    decay = 0.01 if name == "adamw" else 0.0
    recipe = make_recipe(arch_options={"hidden": [8]}, image_shape=[1, 4, 4], epochs=2, batch_size=3,
                         normalize={"mean": [0.5], "std": [0.25]},
                         optimizer={"name": name, "lr": 0.02, "weight_decay": decay})
    plan, objective, state0 = _setup(recipe, n=6, dead_unit=True)
    y = (torch.arange(6) % 10).to(DEV)
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(DEV)
    final = simulate(plan, leaf_state(state0), x, y, (ClipRule(0.5, 0.2),), create_graph=False)
    assert (final.optimizer["exp_avg_sq"]["layers.0.weight"] == 0).any()  # the case it is about
    assert_image_gradient_matches_finite_differences(
        plan, objective, state0, x, y, (ClipRule(0.5, 0.2),),
        [(0, 0, 0, 0), (2, 0, 1, 3), (5, 0, 3, 2), (3, 0, 2, 2)])


def test_one_adam_update_is_torchs_and_has_a_finite_slope_at_zero():
    p0 = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    g0 = torch.tensor([0.0, 3.0, -1e-3], dtype=torch.float64)
    reference = p0.clone().requires_grad_()
    reference.grad = g0.clone()
    torch.optim.Adam([reference], lr=0.1, foreach=False).step()
    p, g = p0.clone().requires_grad_(), g0.clone().requires_grad_()
    new, _, sq = adam_update(p, g, None, None, 1, OptimizerConfig(lr=0.1, name="adam"))
    assert torch.equal(new.detach(), reference.detach()) and sq[0] == 0
    (dg,) = torch.autograd.grad(new.sum(), [g])
    assert torch.isfinite(dg).all()


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
    ({"name": "adamw", "betas": [0.9, 1.0]}, "optimizer.betas: Value error"),
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


def test_the_ranking_steps_with_adam():
    """The ranking runs under AdamW (finite, positive norms), along the plan whose steps, fed the
    true images, end at thetaf."""
    from core.ranking import total_gradient_norms
    from core.simulation import run_steps

    recipe = make_recipe(optimizer={"name": "adamw", "lr": 0.01})
    theta0, thetaf, x, y = trained_pair(recipe)
    plan, _, state0 = objective_setup(recipe, theta0, thetaf, 10, dtype=torch.float32)
    norms = total_gradient_norms(plan, state0, x.to(DEV), y.to(DEV))
    assert torch.isfinite(norms).all() and (norms > 0).all()
    end = run_steps(plan, leaf_state(state0), x.to(DEV), y.to(DEV), range(plan.num_steps), (), False)
    for name, value in end.params.items():
        torch.testing.assert_close(value.detach().cpu(), thetaf[name], rtol=1e-5, atol=1e-6)


def test_an_sgd_surrogate_runs_the_first_updates_then_the_recipes_optimizer():
    """sgd_surrogate_updates = 2 on an AdamW recipe: updates 1-2 are those of the same recipe
    declared as SGD (same lr and weight decay), update 3 on is the exact AdamW objective."""
    recipe = make_recipe(optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.05})
    as_sgd = make_recipe(optimizer={"name": "sgd", "lr": 0.01, "weight_decay": 0.05})
    theta0, thetaf, _, _ = trained_pair(recipe)
    mixed = make_simudy(recipe, theta0, thetaf, iterations=4, sgd_surrogate_updates=2)
    plain = make_simudy(as_sgd, theta0, thetaf, iterations=4)
    assert mixed.surrogate_lowrank is not None and mixed.lowrank is None
    for _ in range(2):
        assert torch.equal(mixed.step(), plain.step())
        mixed.iteration += 1
        plain.iteration += 1
    images = mixed.images.detach().clone().requires_grad_()
    exact = objective_and_image_grad(mixed.plan, mixed.objective, mixed.state0, images, mixed.labels,
                                     mixed.clips_at(2))
    assert torch.equal(mixed.step()[0], exact.loss) and not torch.equal(exact.loss, plain.step()[0])
    assert make_simudy(as_sgd, theta0, thetaf, sgd_surrogate_updates=2).surrogate is None
