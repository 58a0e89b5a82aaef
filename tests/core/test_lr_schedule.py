"""The recipe's lr schedule is torch's own schedulers in closed form, the trainer follows it
step by step, and a simulation of other length follows it stretched."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler

from core.architectures import model_for_recipe
from core.errors import RecipeError
from core.lr_schedule import step_learning_rates
from core.recipe import parse_recipe
from core.train import train

from .conftest import make_recipe, make_simudy, torch_optimizer, trained_pair

SCHEDULES = {
    "step": {"name": "step", "step_size": 2, "gamma": 0.5},
    "multistep": {"name": "multistep", "milestones": [1, 4], "gamma": 0.3},
    "cosine": {"name": "cosine"},
    "cosine-t-max-min-factor": {"name": "cosine", "t_max": 4, "min_factor": 0.1},
    "cosine-warmup": {"name": "cosine", "warmup": 2, "warmup_start_factor": 0.2},
    "per-step-cosine-warmup": {"name": "cosine", "warmup": 4, "interval": "step"},
    "per-step-multistep": {"name": "multistep", "milestones": [3, 7, 15], "interval": "step"},
    "per-step-step-warmup": {"name": "step", "step_size": 5, "gamma": 0.7, "warmup": 3, "interval": "step"},
}


def _torch_scheduler(optimizer, schedule: dict, total: int):
    """The torch scheduler a user would write for ``schedule`` (``total``: its counts)."""
    warmup = schedule.get("warmup", 0)
    name = schedule["name"]
    if name == "step":
        main = lr_scheduler.StepLR(optimizer, schedule["step_size"], schedule.get("gamma", 0.1))
    elif name == "multistep":
        main = lr_scheduler.MultiStepLR(optimizer, schedule["milestones"], schedule.get("gamma", 0.1))
    else:
        lr = optimizer.defaults["lr"]
        main = lr_scheduler.CosineAnnealingLR(optimizer, schedule.get("t_max") or total - warmup,
                                              eta_min=schedule.get("min_factor", 0.0) * lr)
    if not warmup:
        return main
    linear = lr_scheduler.LinearLR(optimizer, schedule.get("warmup_start_factor", 0.1), 1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [linear, main], milestones=[warmup])


def _torch_lrs(recipe, schedule: dict, n: int) -> list[float]:
    steps_per_epoch = -(-n // recipe.batch_size)
    per_step = schedule.get("interval") == "step"
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.optimizer.lr)
    sched = _torch_scheduler(optimizer, schedule, recipe.epochs * (steps_per_epoch if per_step else 1))
    lrs = []
    for _ in range(recipe.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return lrs


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_step_lrs_are_torchs_schedulers(schedule):
    recipe = make_recipe(epochs=6, lr_schedule=SCHEDULES[schedule])
    ours = step_learning_rates(recipe, 10)
    assert len(ours) == 6 * 3
    assert ours == pytest.approx(_torch_lrs(recipe, SCHEDULES[schedule], 10), rel=1e-9, abs=1e-12)
    assert len(set(ours)) > 1


def test_no_schedule_is_the_constant_lr():
    recipe = make_recipe(epochs=2)
    assert step_learning_rates(recipe, 10) == [0.05] * 6
    assert step_learning_rates(recipe, 10, lr=0.2, epochs=1, batch_size=10) == [0.2]


@pytest.mark.parametrize("schedule", ["multistep", "per-step-step-warmup", "cosine-warmup"])
def test_training_follows_torchs_optimizer_and_scheduler(schedule):
    recipe = make_recipe(epochs=4, arch_options={"hidden": [16]}, lr_schedule=SCHEDULES[schedule],
                         optimizer={"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3})
    torch.manual_seed(0)
    model = model_for_recipe(recipe)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(10, *recipe.image_shape), torch.arange(10) % 10
    thetaf = train(model_for_recipe(recipe), theta0, x, y, recipe)

    optimizer = torch_optimizer(recipe, model.parameters())
    per_step = SCHEDULES[schedule].get("interval") == "step"
    sched = _torch_scheduler(optimizer, SCHEDULES[schedule], recipe.epochs * (3 if per_step else 1))
    for _ in range(recipe.epochs):
        for b in (slice(0, 4), slice(4, 8), slice(8, 10)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            optimizer.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    without = train(model_for_recipe(recipe), theta0, x, y, recipe.model_copy(update={"lr_schedule": None}))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(thetaf[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.allclose(without[k], thetaf[k]) for k in thetaf)  # the schedule mattered


def test_a_shorter_simulation_follows_the_schedule_stretched():
    recipe = make_recipe(epochs=6, lr_schedule={"name": "multistep", "milestones": [3], "gamma": 0.5})
    # two simulated epochs of one batch: the second starts half way, at real epoch 3
    assert step_learning_rates(recipe, 10, epochs=2, batch_size=10) == [0.05, 0.025]
    per_step = make_recipe(epochs=2, lr_schedule={"name": "step", "step_size": 3, "interval": "step",
                                                  "gamma": 0.5})
    # real: 2 epochs x 3 batches; simulated: 2 epochs x 1 batch, at real steps 0 and 3
    assert step_learning_rates(per_step, 10, batch_size=10) == [0.05, 0.025]
    assert step_learning_rates(per_step, 10) == [0.05] * 3 + [0.025] * 3


def test_simudy_simulates_the_schedule_at_the_lr_it_tries():
    recipe = make_recipe(lr_schedule=SCHEDULES["cosine-warmup"])
    theta0, thetaf, _, _ = trained_pair(recipe)
    recon = make_simudy(recipe, theta0, thetaf, simulated_lr=0.2, simulated_epochs=2)
    assert recon.plan.lrs == tuple(step_learning_rates(recipe, 10, lr=0.2, epochs=2))
    assert recon.plan.lrs[0] == pytest.approx(0.2 * 0.2)  # the warmup's first factor
    assert recon.plan.lrs[-1] == pytest.approx(0.2 * 0.6)  # real epoch 1 of 3, half way up the warmup


@pytest.mark.parametrize("schedule,message", [
    ({"name": "cos"}, "does not match any of the expected tags: 'step', 'multistep', 'cosine'"),
    ({"name": "multistep", "milestones": [5, 3]}, "milestones must be positive and strictly increasing"),
    ({"name": "step"}, "lr_schedule.step.step_size: Field required"),
    ({"name": "cosine", "warmup": -1}, "lr_schedule.cosine.warmup"),
    ({"name": "cosine", "interval": "batch"}, "lr_schedule.cosine.interval"),
])
def test_a_bad_schedule_is_one_readable_line(schedule, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe({"architecture": "mlp", "lr_schedule": schedule})
    assert message in str(err.value)
    assert "\n" not in str(err.value)
