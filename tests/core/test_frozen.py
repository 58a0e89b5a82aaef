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
from core.parameters import trainable_split
from core.simulation import SimulationPlan, leaf_state, simulate
from core.training_step import TrainState, recipe_clip_rules, set_model_mode

from .conftest import (TEST_DEVICE, assert_image_gradient_matches_finite_differences, make_recipe,
                       make_simudy, objective_setup, torch_training, trained_pair)

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


@pytest.mark.parametrize("case", list(CASES))
def test_training_equals_torch_with_requires_grad_off(case):
    recipe = make_recipe(**CASES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    reference = torch_training(recipe, theta0, x, y)  # frozen ones with requires_grad off
    frozen = [n for n in reference if recipe.is_frozen(n)]
    assert frozen and all(torch.equal(thetaf[n], theta0[n]) for n in frozen)
    for name, value in reference.items():
        torch.testing.assert_close(thetaf[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("case", list(CASES))
def test_simulation_with_true_images_reproduces_a_training_with_frozen_layers(case):
    recipe = make_recipe(**CASES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV)
    params, frozen, buffers = trainable_split(model, {k: v.to(DEV) for k, v in theta0.items()}, recipe)
    plan = SimulationPlan.for_recipe(model, recipe, len(x))
    final = simulate(plan, leaf_state(TrainState(params, {}, buffers, frozen=frozen)), x.to(DEV), y.to(DEV),
                     recipe_clip_rules(recipe))
    assert set(final.params).isdisjoint(frozen)
    for name, value in final.params.items():
        torch.testing.assert_close(value.detach().cpu(), thetaf[name], rtol=1e-5, atol=1e-6, msg=name)


def test_image_gradient_with_a_frozen_layer_matches_finite_differences():
    recipe = make_recipe(arch_options={"hidden": [8, 6]}, image_shape=[1, 4, 4], epochs=2, batch_size=3,
                         normalize={"mean": [0.5], "std": [0.25]}, frozen=["layers.1"],
                         optimizer={"lr": 0.1, "momentum": 0.5})
    theta0, thetaf, _, _ = trained_pair(recipe, n=6)
    plan, objective, state0 = objective_setup(recipe, theta0, thetaf, 6)
    assert set(state0.frozen) == {"layers.1.weight"} and "layers.1.weight" not in objective.target
    y = (torch.arange(6) % 10).to(DEV)
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(DEV)
    assert_image_gradient_matches_finite_differences(plan, objective, state0, x, y, (),
                                                     [(0, 0, 0, 0), (2, 0, 1, 3), (5, 0, 3, 2)])


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
    check_pair(recipe, theta0, {k: v.half() for k, v in thetaf.items()})  # saved in half precision
    only_frozen_moved = {**theta0, "layers.0.bias": theta0["layers.0.bias"] + 1e-3}
    with pytest.raises(CheckpointError, match=r"identical parameters: nothing was trained \(outside recipe.frozen\)"):
        check_pair(recipe, theta0, only_frozen_moved)


def test_the_ranking_reads_the_frozen_parameters_from_the_state():
    """The gradient-norm ranking runs the model functionally: the frozen tensors come from the
    state, never from the module's own (here zeroed) weights."""
    from core.ranking import total_gradient_norms

    recipe = make_recipe(frozen=["layers.0"])
    theta0, thetaf, x, y = trained_pair(recipe)
    plan, _, state0 = objective_setup(recipe, theta0, thetaf, 10, dtype=torch.float32)
    x, y = x.to(DEV), y.to(DEV)
    reference = total_gradient_norms(plan, state0, x, y)
    with torch.no_grad():
        for p in plan.model.parameters():
            p.zero_()
    torch.testing.assert_close(total_gradient_norms(plan, state0, x, y), reference)
    assert (reference > 0).all()


@pytest.mark.parametrize("method", ["kkt", "ntk"])
def test_the_baselines_run_on_a_recipe_with_frozen_layers(method):
    """They fit the trained parameters only: the frozen first layer is a constant of the model."""
    from core.methods import get_method, parse_settings
    from core.methods.base import MethodInputs

    from .conftest import EXECUTION

    recipe = make_recipe(frozen=["layers.0"])
    theta0, thetaf, _, _ = trained_pair(recipe)
    run = get_method(method)(MethodInputs(recipe, thetaf, theta0),
                             parse_settings({"method": method, "num_images": 4, "iterations": 3}), EXECUTION)
    run.run()
    assert run.result().images.shape == (8, 3, 8, 8)  # 2N candidates
    assert all(torch.isfinite(torch.as_tensor(v)) for v in run.progress().metrics.values())
