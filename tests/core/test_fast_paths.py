"""Every fast path gives the plain engine's loss and image gradient; approximate modes reduce
to the exact gradient where they should; runs on the fast path resume bit-exactly.

Tolerances: the low-rank MLP engine against the generic one agrees to 1e-10 relative in fp64
(the same function, rounded differently) and to 2e-5 in fp32. The clip skip is bit-exact.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core import simulation_lowrank
from core.execution import Execution
from core.training_step import ClipRule, TrainState, clip_by_global_norm
from core.simulation import objective_and_image_grad
from core.simulation_approx import per_step_objective_and_image_grad, truncated_objective_and_image_grad
from core.methods.simudy import image_schedule
from core.state_io import state_from_bytes, state_to_bytes

from .conftest import TEST_DEVICE, make_recipe, make_simudy, objective_setup, simudy_settings, trained_pair

DEV = TEST_DEVICE
MLP_CASES = {
    "bias-first": dict(),
    "bias-all": dict(arch_options={"hidden": [16, 12], "bias": "all"}),
    "bias-none-one-hidden": dict(arch_options={"hidden": [16], "bias": "none"}),
    "recipe-clipping-last-batch-smaller": dict(clip_grad_norm=0.5, batch_size=3),
    "logistic-one-output": dict(num_classes=2, loss="logistic"),
    "momentum": dict(optimizer={"lr": 0.05, "momentum": 0.9}),
    "nesterov-weight-decay": dict(optimizer={"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                             "weight_decay": 5e-3}),
    "weight-decay-bias-all-clipping": dict(arch_options={"hidden": [16, 12], "bias": "all"},
                                           optimizer={"lr": 0.1, "weight_decay": 0.05},
                                           clip_grad_norm=0.5, batch_size=3),
    "cosine-warmup-schedule": dict(lr_schedule={"name": "cosine", "warmup": 1, "min_factor": 0.1}),
    "per-step-multistep-momentum-weight-decay": dict(
        optimizer={"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-3},
        lr_schedule={"name": "multistep", "milestones": [2, 5], "gamma": 0.3, "interval": "step"}),
}
CLIPS = {"no-clip": (), "clip-fires": (ClipRule(0.3, 0.2),), "clip-never-fires": (ClipRule(1e6, 5.0),)}


def _grad(fn, x, *args, **kw):
    leaf = x.clone().requires_grad_()
    value = fn(*args[:3], leaf, *args[3:], **kw)
    return value, leaf.grad


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)], ids=["fp64", "fp32"])
@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("case", list(MLP_CASES))
def test_low_rank_mlp_equals_generic_engine(case, clip, dtype, tol):
    recipe = make_recipe(**MLP_CASES[case])
    theta0, thetaf, _, _ = trained_pair(recipe)
    plan, objective, state0 = objective_setup(recipe, theta0, thetaf, 10, dtype=dtype)
    clips = tuple(recipe.clip_grad_norm and [ClipRule(recipe.clip_grad_norm, recipe.clip_grad_norm)] or ()) \
        + CLIPS[clip]
    y = (torch.arange(10) % recipe.num_classes).to(DEV)
    x = torch.randn(10, *recipe.image_shape, dtype=dtype, generator=torch.Generator().manual_seed(3)).to(DEV)
    plain, g_plain = _grad(objective_and_image_grad, x, plan, objective, state0, y, clips)
    fast_engine = simulation_lowrank.LowRankMLPObjective(plan, objective, state0)
    leaf = x.clone().requires_grad_()
    fast = fast_engine(leaf, y, clips)
    assert float(fast.loss) == pytest.approx(float(plain.loss), rel=tol, abs=tol)
    assert float(fast.cosine) == pytest.approx(float(plain.cosine), rel=tol, abs=tol)
    scale = g_plain.abs().max()
    assert scale > 0
    torch.testing.assert_close(leaf.grad / scale, g_plain / scale, rtol=0, atol=tol)


def test_low_rank_path_is_chosen_only_where_it_applies(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    assert make_simudy(recipe, theta0, thetaf).lowrank is not None
    assert make_simudy(recipe, theta0, thetaf, execution=Execution(device=DEV.type, fast_paths=False)).lowrank is None
    assert make_simudy(recipe, theta0, thetaf, gradient="truncated").lowrank is None
    assert make_simudy(recipe, theta0, thetaf, precision="bf16").lowrank is None
    momentum = make_recipe(optimizer={"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4})
    t0, tf, _, _ = trained_pair(momentum)
    method = make_simudy(momentum, t0, tf)
    assert method.lowrank is not None
    # a simulation that would start from momentum buffers is not one it runs
    started = TrainState(method.state0.params,
                         {"momentum": {k: torch.zeros_like(v) for k, v in method.state0.params.items()}}, {})
    assert not simulation_lowrank.supports(method.plan, started)
    adamw = make_recipe(optimizer={"name": "adamw", "lr": 0.01})
    t0, tf, _, _ = trained_pair(adamw)
    assert make_simudy(adamw, t0, tf).lowrank is None  # Adam's update is not linear in the images
    conv = make_recipe(architecture="convnet", arch_options={"width": 4})
    t0, tf, _, _ = trained_pair(conv)
    assert make_simudy(conv, t0, tf).lowrank is None


def test_simudy_runs_agree_between_engines(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    kw = dict(iterations=4, clipping={"threshold": 0.5, "until_iteration": 2})
    fast = make_simudy(recipe, theta0, thetaf, **kw)
    plain = make_simudy(recipe, theta0, thetaf, execution=Execution(device=DEV.type, fast_paths=False), **kw)
    fast.run()
    plain.run()
    for a, b in zip(fast.history_rows(), plain.history_rows()):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    torch.testing.assert_close(fast.images, plain.images, rtol=1e-4, atol=1e-5)


def test_low_rank_run_resumes_bit_exactly(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    kw = dict(iterations=6, clipping={"threshold": 0.5, "until_iteration": 3}, cosine_t_max=2)
    straight = make_simudy(recipe, theta0, thetaf, **kw)
    assert straight.lowrank is not None
    straight.run()
    first = make_simudy(recipe, theta0, thetaf, **kw)
    calls = iter(range(100))
    assert not first.run(should_stop=lambda: next(calls) >= 4)
    blob = state_to_bytes(first.state_dict())
    resumed = make_simudy(recipe, theta0, thetaf, **kw)
    resumed.load_state_dict(state_from_bytes(blob))
    assert resumed.run()
    torch.testing.assert_close(resumed.images, straight.images, rtol=0, atol=0)
    assert resumed.history_rows() == straight.history_rows()


def _reference_clip(grads, rule):
    """The clip as it was before the skip: always multiply by a torch.where scale."""
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    scale = torch.where(norm > rule.threshold, rule.target_norm / (norm + 1e-6), torch.ones_like(norm))
    return [g * scale for g in grads]


@pytest.mark.parametrize("threshold", [0.1, 1e3])
def test_clip_skip_is_bit_exact(threshold):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    w = [torch.randn(7, 3, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)]
    rule = ClipRule(threshold, 0.05)
    outs = []
    for clip in (_reference_clip, clip_by_global_norm):
        leaf = x.clone().requires_grad_()
        grads = list(torch.autograd.grad(((leaf @ w[0] + w[1]) ** 3).sum(), [leaf], create_graph=True))
        grads = [g * (1 + leaf) for g in grads]
        (clipped,) = clip(grads, rule)
        (clipped.sin().sum()).backward()
        outs.append((clipped.detach(), leaf.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def _conv_setup():
    recipe = make_recipe(architecture="convnet", arch_options={"width": 4}, epochs=2)
    theta0, thetaf, _, _ = trained_pair(recipe)
    plan, objective, state0 = objective_setup(recipe, theta0, thetaf, 10, dtype=torch.float64)
    y = (torch.arange(10) % 10).to(DEV)
    x = torch.randn(10, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).to(DEV)
    return plan, objective, state0, x, y


def test_truncation_window_covering_every_step_is_exact():
    plan, objective, state0, x, y = _conv_setup()
    clips = (ClipRule(0.5, 0.3),)
    exact, g_exact = _grad(objective_and_image_grad, x, plan, objective, state0, y, clips)
    trunc, g_trunc = _grad(truncated_objective_and_image_grad, x, plan, objective, state0, y, clips,
                           window=plan.num_steps)
    assert float(trunc.loss) == pytest.approx(float(exact.loss), rel=1e-12)
    torch.testing.assert_close(g_trunc, g_exact, rtol=1e-9, atol=1e-12)
    short, g_short = _grad(truncated_objective_and_image_grad, x, plan, objective, state0, y, clips, window=1)
    assert float(short.loss) == pytest.approx(float(exact.loss), rel=1e-12)  # the loss stays exact
    assert not torch.allclose(g_short, g_exact)


def test_per_step_gradient_is_exact_for_one_step_and_close_for_more():
    plan, objective, state0, x, y = _conv_setup()
    one = dataclasses.replace(plan, batches=[slice(0, 10)], epochs=1, lrs=plan.lrs[:1])
    exact, g_exact = _grad(objective_and_image_grad, x, one, objective, state0, y, ())
    approx, g_approx = _grad(per_step_objective_and_image_grad, x, one, objective, state0, y, ())
    assert float(approx.loss) == pytest.approx(float(exact.loss), rel=1e-12)
    torch.testing.assert_close(g_approx, g_exact, rtol=1e-9, atol=1e-12)
    exact, g_exact = _grad(objective_and_image_grad, x, plan, objective, state0, y, ())
    approx, g_approx = _grad(per_step_objective_and_image_grad, x, plan, objective, state0, y, ())
    assert float(approx.loss) == pytest.approx(float(exact.loss), rel=1e-12)
    cos = torch.nn.functional.cosine_similarity(g_approx.flatten(), g_exact.flatten(), 0)
    assert cos > 0.5  # an approximation that points the same way


@pytest.mark.parametrize("mode", ["truncated", "per_step"])
def test_approximate_modes_run_and_learn(mlp_case, mode):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, iterations=20, image_lr=0.05, gradient=mode,
                        truncation_window=3)
    assert recon.run()
    losses = [h["loss"] for h in recon.history_rows()]
    assert losses[-1] < losses[0]


def test_state0_unchanged_by_the_low_rank_engine(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, iterations=2)
    before = {k: v.clone() for k, v in recon.state0.params.items()}
    recon.run()
    assert all(torch.equal(before[k], v) for k, v in recon.state0.params.items())
    assert isinstance(recon.state0, TrainState)


def test_cosine_t_max_null_decays_once_over_the_run(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, iterations=4, image_lr=0.04, cosine_t_max=None)
    assert recon.scheduler.T_max == 4
    recon.run()
    assert recon.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_image_optimiser_defaults_depend_on_the_architecture(mlp_case):
    """MLP recipes: the measured lr 0.03 with one cosine decay over the run; other architectures
    keep the authors' 0.01 and T_max 100; explicit values win on every recipe."""
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, iterations=7)
    assert recon.optimizer.param_groups[0]["initial_lr"] == 0.03 and recon.scheduler.T_max == 7
    resnet = make_recipe(architecture="resnet18", arch_options={})
    assert image_schedule(simudy_settings(iterations=7), resnet) == (0.01, 100)
    explicit = simudy_settings(iterations=7, image_lr=0.02, cosine_t_max=3)
    assert image_schedule(explicit, recipe) == image_schedule(explicit, resnet) == (0.02, 3)
