"""Recipes with frozen parameters (a fine-tuned head on a fixed backbone, a fixed first layer):
training leaves them alone as torch does with ``requires_grad=False``, the simulation holds
them constant and stays exact, and a recipe that contradicts its network or its checkpoints is
one readable error."""

from __future__ import annotations

import pytest
import torch

from core.architectures import model_for_recipe
from core.checkpoints import check_pair
from core.errors import CheckpointError, RecipeError
from core.input_span import applies
from core.methods.candidates import FunctionalModel
from core.simulation import DisplacementObjective, SimulationPlan, leaf_state, objective_and_image_grad, simulate
from core.training_step import ClipRule, TrainState, batch_slices, set_model_mode, trainable_split

from .conftest import TEST_DEVICE, make_recipe, make_simudy, trained_pair

DEV = TEST_DEVICE
CONVNET = dict(architecture="convnet", arch_options={"width": 4})

CASES = {
    "mlp-first-layer-sgd-momentum-wd": dict(frozen=["layers.0"],
                                            optimizer={"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    "mlp-one-tensor-clipped": dict(frozen=["layers.1.weight"], clip_grad_norm=0.5),
    "convnet-backbone-adamw": dict(**CONVNET, frozen=["features"], optimizer={"name": "adamw", "lr": 0.01}),
    "convnet-first-conv-bn-train": dict(**CONVNET, frozen=["features.0"], model_mode="train",
                                        optimizer={"lr": 0.05, "momentum": 0.9}),
}


def _torch_optimizer(recipe, params):
    o = recipe.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


@pytest.mark.parametrize("case", list(CASES))
def test_training_equals_torch_with_requires_grad_off(case):
    recipe = make_recipe(**CASES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe)
    model.load_state_dict(theta0)
    for name, p in model.named_parameters():
        p.requires_grad_(not recipe.is_frozen(name))
    optimizer = _torch_optimizer(recipe, [p for p in model.parameters() if p.requires_grad])
    for b in batch_slices(len(x), recipe.batch_size) * recipe.epochs:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        if recipe.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                           recipe.clip_grad_norm)
        optimizer.step()
    frozen = [n for n, _ in model.named_parameters() if recipe.is_frozen(n)]
    assert frozen and all(torch.equal(thetaf[n], theta0[n]) for n in frozen)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(thetaf[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("case", list(CASES))
def test_simulation_with_true_images_reproduces_a_training_with_frozen_layers(case):
    recipe = make_recipe(**CASES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV)
    params, frozen, buffers = trainable_split(model, {k: v.to(DEV) for k, v in theta0.items()}, recipe)
    plan = SimulationPlan.for_recipe(model, recipe, len(x))
    clips = (ClipRule(recipe.clip_grad_norm, recipe.clip_grad_norm),) if recipe.clip_grad_norm else ()
    final = simulate(plan, leaf_state(TrainState(params, {}, buffers, frozen=frozen)), x.to(DEV), y.to(DEV), clips)
    assert set(final.params).isdisjoint(frozen)
    for name, value in final.params.items():
        torch.testing.assert_close(value.detach().cpu(), thetaf[name], rtol=1e-5, atol=1e-6, msg=name)


def test_image_gradient_with_a_frozen_layer_matches_finite_differences():
    recipe = make_recipe(arch_options={"hidden": [8, 6]}, image_shape=[1, 4, 4], epochs=2, batch_size=3,
                         normalize={"mean": [0.5], "std": [0.25]}, frozen=["layers.1"],
                         optimizer={"lr": 0.1, "momentum": 0.5})
    theta0, thetaf, _, _ = trained_pair(recipe, n=6)
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV, torch.float64)
    to64 = lambda state: {k: v.to(DEV, torch.float64) for k, v in state.items()}  # noqa: E731
    params, frozen, buffers = trainable_split(model, to64(theta0), recipe)
    paramsf, _, _ = trainable_split(model, to64(thetaf), recipe)
    plan = SimulationPlan.for_recipe(model, recipe, 6)
    objective = DisplacementObjective(params, paramsf, tv_weight=0.01)
    state0 = TrainState(params, {}, buffers, frozen=frozen)
    y = (torch.arange(6) % 10).to(DEV)
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(DEV)
    leaf = x.clone().requires_grad_()
    objective_and_image_grad(plan, objective, state0, leaf, y, ())
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (2, 0, 1, 3), (5, 0, 3, 2)]:
        values = []
        for sign in (1, -1):
            xp = x.clone()
            xp[idx] += sign * eps
            values.append(float(objective_and_image_grad(plan, objective, state0, xp.requires_grad_(), y, ()).loss))
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(numeric - float(leaf.grad[idx])) <= 1e-5 + 1e-4 * abs(numeric), idx


def test_simudy_matches_only_the_trained_parameters():
    """A head fine-tuned on a frozen backbone: the objective is over the head alone, and the
    generic engine runs (the low-rank engine and the input span need every layer trained)."""
    recipe = make_recipe(frozen=["layers.0", "layers.1"])
    theta0, thetaf, _, _ = trained_pair(recipe)
    method = make_simudy(recipe, theta0, thetaf, iterations=4)
    assert set(method.objective.target) == {"layers.2.weight"}
    assert method.lowrank is None and method.span is None
    assert torch.isfinite(torch.stack([method.step() for _ in range(4)])).all()
    assert not applies(model_for_recipe(recipe), recipe)
    with pytest.raises(RecipeError, match="input_span 'on' needs"):
        make_simudy(recipe, theta0, thetaf, input_span="on")


def test_baselines_fit_the_trained_parameters_only():
    recipe = make_recipe(frozen=["layers.0"])
    theta0, _, _, _ = trained_pair(recipe)
    params, rest = FunctionalModel(recipe, torch.device("cpu")).split(theta0)
    assert "layers.0.weight" not in params and "layers.0.weight" in rest and "layers.1.weight" in params


def test_frozen_names_whole_components():
    recipe = make_recipe(frozen=["layers.0", "head.weight"])
    assert recipe.is_frozen("layers.0.weight") and recipe.is_frozen("layers.0")
    assert not recipe.is_frozen("layers.01.weight") and not recipe.is_frozen("layers.1.weight")
    assert recipe.is_frozen("head.weight") and not recipe.is_frozen("head.weight_g")


@pytest.mark.parametrize("overrides, message", [
    (dict(frozen=["layer.0"]), "recipe.frozen: 'layer.0' names no parameter of mlp (its parameters: "
                               "layers.0.weight, layers.0.bias, layers.1.weight, layers.2.weight)"),
    (dict(frozen=["layers"]), "recipe.frozen freezes every parameter: nothing was trained"),
    (dict(**CONVNET, frozen=["feat"]), "'feat' names no parameter of convnet (its parameters: "
                                       "features.0.weight, features.0.bias, features.1.weight, "
                                       "features.1.bias, features.4.weight, features.4.bias and 2 more)"),
])
def test_a_frozen_entry_that_fits_no_parameter_is_one_readable_line(overrides, message):
    recipe = make_recipe(**overrides)
    theta0 = model_for_recipe(recipe).state_dict()
    with pytest.raises(RecipeError) as err:
        check_pair(recipe, None, theta0)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_repeated_frozen_entry_is_refused():
    with pytest.raises(ValueError, match="frozen names a parameter twice"):
        make_recipe(frozen=["layers.0", "layers.0"])


def test_checkpoints_that_contradict_the_frozen_list_are_refused():
    recipe = make_recipe(frozen=["layers.0"])
    theta0, thetaf, _, _ = trained_pair(recipe)
    check_pair(recipe, theta0, thetaf)
    moved = {**thetaf, "layers.0.bias": thetaf["layers.0.bias"] + 1e-3}
    with pytest.raises(CheckpointError, match="recipe.frozen freezes 'layers.0.bias', but theta0 and "
                                              "thetaf disagree on it"):
        check_pair(recipe, theta0, moved)
    only_frozen_moved = {**theta0, "layers.0.bias": theta0["layers.0.bias"] + 1e-3}
    with pytest.raises(CheckpointError, match=r"identical parameters: nothing was trained \(outside recipe.frozen\)"):
        check_pair(recipe, theta0, only_frozen_moved)
