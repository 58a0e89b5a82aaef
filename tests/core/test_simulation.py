"""The simulation fed the true images must reproduce the real trainer's thetaf, and its image
gradient must be the true derivative of the SimuDy objective."""

from __future__ import annotations

import pytest
import torch

from core.architectures import model_for_recipe
from core.parameters import split_state_dict
from core.simulation import SimulationPlan, leaf_state, objective_and_image_grad, simulate
from core.training_step import (ClipRule, OptimizerConfig, TrainState, batch_slices, recipe_clip_rules,
                                set_model_mode, training_step)

from .conftest import (TEST_DEVICE, assert_image_gradient_matches_finite_differences, make_recipe,
                       objective_setup, torch_optimizer, trained_pair)

DEV = TEST_DEVICE
TINY_VIT = {"patch": 4, "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2}

CASES = {
    "mlp": dict(),
    "mlp-bias-all-momentum": dict(arch_options={"hidden": [16], "bias": "all"},
                                  optimizer={"lr": 0.05, "momentum": 0.9}),
    "mlp-weight-decay-nesterov": dict(optimizer={"lr": 0.05, "momentum": 0.5, "weight_decay": 0.01,
                                                 "nesterov": True}),
    "mlp-recipe-clipping": dict(clip_grad_norm=0.5),
    "mlp-clipping-momentum-weight-decay": dict(clip_grad_norm=0.5, optimizer={"lr": 0.05, "momentum": 0.9,
                                                                             "weight_decay": 0.01}),
    "mlp-cosine-warmup-momentum": dict(optimizer={"lr": 0.05, "momentum": 0.9},
                                       lr_schedule={"name": "cosine", "warmup": 1}),
    "mlp-per-step-multistep": dict(lr_schedule={"name": "multistep", "milestones": [2, 5], "gamma": 0.3,
                                                "interval": "step"}),
    "convnet-bn-frozen": dict(architecture="convnet", arch_options={"width": 4}),
    "convnet-bn-train-momentum": dict(architecture="convnet", arch_options={"width": 4},
                                      model_mode="train", optimizer={"lr": 0.05, "momentum": 0.9}),
    "resnet18-bn-frozen": dict(architecture="resnet18", arch_options={}, epochs=2),
    "resnet18-bn-train-wd-step-schedule": dict(
        architecture="resnet18", arch_options={}, epochs=2, model_mode="train",
        optimizer={"lr": 0.01, "weight_decay": 5e-4}, lr_schedule={"name": "step", "step_size": 1}),
    "resnet50": dict(architecture="resnet50", arch_options={}, epochs=1, batch_size=5),
    "torchvision-resnet18": dict(architecture="torchvision/resnet18", arch_options={},
                                 image_shape=[3, 16, 16], epochs=2),
    "vit-adamw-cosine": dict(architecture="vit", arch_options=TINY_VIT, optimizer={"name": "adamw", "lr": 0.01},
                             lr_schedule={"name": "cosine", "interval": "step", "warmup": 2}),
    "vit-sgd-momentum-clipped": dict(architecture="vit", arch_options=TINY_VIT, clip_grad_norm=1.0,
                                     optimizer={"lr": 0.05, "momentum": 0.9}),
}


def _simulate_true(recipe, theta0, x, y):
    model = set_model_mode(model_for_recipe(recipe), recipe).to(DEV)
    params, buffers = split_state_dict(model, {k: v.to(DEV) for k, v in theta0.items()})
    x, y = x.to(DEV), y.to(DEV)
    plan = SimulationPlan.for_recipe(model, recipe, len(x))
    state = TrainState({k: v.clone().requires_grad_() for k, v in params.items()}, {}, buffers)
    return simulate(plan, state, x, y, recipe_clip_rules(recipe), create_graph=True)


@pytest.mark.parametrize("case", list(CASES))
def test_simulation_with_true_images_reproduces_thetaf(case):
    recipe = make_recipe(**CASES[case])
    theta0, thetaf, x, y = trained_pair(recipe)
    assert len(x) > recipe.batch_size  # several batches per epoch
    final = _simulate_true(recipe, theta0, x, y)
    changed = False
    for name, value in final.params.items():
        torch.testing.assert_close(value.detach().cpu(), thetaf[name], rtol=1e-5, atol=1e-6, msg=name)
        changed |= not torch.equal(thetaf[name], theta0[name])
    assert changed, "training did not move the parameters"


@pytest.mark.parametrize("case", ["mlp-bias-all-momentum", "mlp-weight-decay-nesterov", "mlp-recipe-clipping",
                                  "mlp-clipping-momentum-weight-decay"])
def test_training_steps_equal_torch_optim_sgd(case):
    """The one SGD rule (core.training_step.sgd_update, shared by training, simulation and the
    low-rank engine) against torch's own optimiser, clipping by torch's clip_grad_norm_."""
    recipe = make_recipe(**CASES[case])
    theta0, _, x, y = trained_pair(recipe)
    model = set_model_mode(model_for_recipe(recipe), recipe)
    model.load_state_dict(theta0)
    optimizer = torch_optimizer(recipe, model.parameters())
    params, buffers = split_state_dict(model, {k: v.clone() for k, v in theta0.items()})
    state = TrainState(params, {}, buffers)
    clips = recipe_clip_rules(recipe)
    for b in batch_slices(len(x), recipe.batch_size) * 2:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        if recipe.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
        optimizer.step()
        state, _ = training_step(model, leaf_state(state), x[b], y[b], OptimizerConfig.from_recipe(recipe),
                                 clips=clips)
    for name, value in model.named_parameters():
        torch.testing.assert_close(state.params[name].detach(), value.detach(), rtol=1e-5, atol=1e-6, msg=name)


def test_simulation_is_differentiable_in_the_images(mlp_case):
    recipe, theta0, thetaf, x, y = mlp_case
    x = x.to(DEV).requires_grad_()
    final = _simulate_true(recipe, theta0, x, y)
    loss = sum((p ** 2).sum() for p in final.params.values())
    (g,) = torch.autograd.grad(loss, [x])
    assert g.abs().sum() > 0


@pytest.mark.parametrize("clip", [(), (ClipRule(0.5, 0.2),)], ids=["no-clip", "clip"])
def test_image_gradient_matches_finite_differences(clip):
    recipe = make_recipe(arch_options={"hidden": [8]}, image_shape=[1, 4, 4], epochs=2, batch_size=3,
                         normalize={"mean": [0.5], "std": [0.25]},
                         optimizer={"lr": 0.1, "momentum": 0.5})
    theta0, thetaf, _, _ = trained_pair(recipe, n=6)
    plan, objective, state0 = objective_setup(recipe, theta0, thetaf, 6)
    y = (torch.arange(6) % 10).to(DEV)
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(DEV)
    assert_image_gradient_matches_finite_differences(plan, objective, state0, x, y, clip,
                                                     [(0, 0, 0, 0), (2, 0, 1, 3), (5, 0, 3, 2), (3, 0, 2, 2)])


@pytest.mark.parametrize("segment_steps", [1, 2, 5])
def test_segment_checkpointing_gives_the_same_gradient(segment_steps):
    recipe = make_recipe(architecture="convnet", arch_options={"width": 4},
                         optimizer={"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3})
    theta0, thetaf, _, _ = trained_pair(recipe)
    plan, objective, state0 = objective_setup(recipe, theta0, thetaf, 10, dtype=torch.float32)
    y = (torch.arange(10) % 10).to(DEV)
    x = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(2)).to(DEV)
    grads, losses = [], []
    for seg in (0, segment_steps):
        leaf = x.clone().requires_grad_()
        losses.append(float(objective_and_image_grad(plan, objective, state0, leaf, y,
                                                     (ClipRule(1.0, 0.5),), seg).loss))
        grads.append(leaf.grad)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def test_image_gradient_through_attention_matches_finite_differences():
    """ViT: softmax attention, LayerNorm and GELU differentiated twice (explicit attention)."""
    recipe = make_recipe(architecture="vit", arch_options=TINY_VIT, image_shape=[1, 8, 8], epochs=2,
                         batch_size=3, normalize={"mean": [0.5], "std": [0.25]},
                         optimizer={"name": "adamw", "lr": 0.01})
    theta0, thetaf, _, _ = trained_pair(recipe, n=6)
    plan, objective, state0 = objective_setup(recipe, theta0, thetaf, 6)
    y = (torch.arange(6) % 10).to(DEV)
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).to(DEV)
    assert_image_gradient_matches_finite_differences(plan, objective, state0, x, y, (),
                                                     [(0, 0, 0, 0), (2, 0, 5, 3), (5, 0, 7, 7)])
