"""The learning-rate schedule of a recipe, and the lr of every optimizer step of a run.

Why one list of per-step lrs: the real trainer, every engine of the simulation and the input
span read the lr of step ``t`` from the same ``step_learning_rates``, so a simulation fed the
true images still reproduces thetaf, and the audited model's schedule (almost every real
training has one) is simulated rather than replaced by a constant lr.

Each schedule is the closed form of the torch scheduler its users run, counted in epochs
(``scheduler.step()`` after every epoch, torch's convention) or in optimizer steps
(``interval: "step"``, after every batch). ``warmup`` prepends torch's ``LinearLR`` from
``warmup_start_factor`` to 1 (``SequentialLR([LinearLR, main], milestones=[warmup])``): the main
schedule then counts from 0 at the end of the warmup. The factor multiplies the recipe's lr,
or the lr a search tries when the real one is unknown.

A simulation may unroll other epochs or batches than the real training (``simulated_epochs``,
``simulated_batch_size``): its step at fraction p of the run then takes the lr the real
training had at fraction p of its own (the schedule stretched, not cut short).
"""

from __future__ import annotations

import bisect
import math
from abc import abstractmethod
from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import Field, model_validator

from core.schema import UserModel

if TYPE_CHECKING:
    from core.recipe import Recipe


class _Schedule(UserModel):
    interval: Literal["epoch", "step"] = Field(
        "epoch", description="what the schedule counts: epochs (scheduler.step() after each "
        "epoch) or optimizer steps (after each batch)")
    warmup: int = Field(0, ge=0, le=1_000_000, description="linear warmup length, in intervals")
    warmup_start_factor: float = Field(0.1, gt=0, le=1, description="the lr factor at the first "
                                       "warmup interval (torch LinearLR's start_factor)")

    def factor(self, t: int, total: int) -> float:
        """The lr factor at count ``t`` of a training that lasts ``total`` counts."""
        if t < self.warmup:
            return self.warmup_start_factor + (1 - self.warmup_start_factor) * t / self.warmup
        return self.main_factor(t - self.warmup, total - self.warmup)

    @abstractmethod
    def main_factor(self, t: int, total: int) -> float:
        """The schedule's own factor, ``t`` counts after the warmup, of ``total``."""


class StepSchedule(_Schedule):
    """torch ``StepLR``: the lr times ``gamma`` every ``step_size`` counts."""

    name: Literal["step"]
    step_size: int = Field(..., ge=1, le=1_000_000)
    gamma: float = Field(0.1, gt=0, le=10)

    def main_factor(self, t: int, total: int) -> float:
        return self.gamma ** (t // self.step_size)


class MultiStepSchedule(_Schedule):
    """torch ``MultiStepLR``: the lr times ``gamma`` at each milestone."""

    name: Literal["multistep"]
    milestones: list[int] = Field(..., min_length=1, max_length=1000)
    gamma: float = Field(0.1, gt=0, le=10)

    @model_validator(mode="after")
    def _increasing(self) -> "MultiStepSchedule":
        if any(m < 1 for m in self.milestones) or self.milestones != sorted(set(self.milestones)):
            raise ValueError("milestones must be positive and strictly increasing")
        return self

    def main_factor(self, t: int, total: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, t)


class CosineSchedule(_Schedule):
    """torch ``CosineAnnealingLR``: from the lr down to ``min_factor`` times it over ``t_max``
    counts (the rest of the training after the warmup when not given)."""

    name: Literal["cosine"]
    t_max: int | None = Field(None, ge=1, le=10_000_000)
    min_factor: float = Field(0.0, ge=0, le=1, description="eta_min as a fraction of the lr")

    def main_factor(self, t: int, total: int) -> float:
        t_max = self.t_max or max(total, 1)
        return self.min_factor + (1 - self.min_factor) * (1 + math.cos(math.pi * t / t_max)) / 2


LRSchedule = Annotated[Union[StepSchedule, MultiStepSchedule, CosineSchedule], Field(discriminator="name")]


def step_learning_rates(recipe: "Recipe", num_images: int, *, lr: float | None = None,
                        epochs: int | None = None, batch_size: int | None = None) -> list[float]:
    """The lr of every step of a run over ``num_images`` images with the recipe's schedule:
    the real training (defaults), or a simulation of ``epochs`` epochs of ``batch_size``
    batches whose real training had the recipe's (stretched onto it). ``lr``: the base lr
    (default the recipe's)."""
    base = recipe.optimizer.lr if lr is None else lr
    epochs = epochs or recipe.epochs
    steps_per_epoch = math.ceil(num_images / (batch_size or recipe.batch_size))
    total = epochs * steps_per_epoch
    schedule = recipe.lr_schedule
    if schedule is None:
        return [base] * total
    if schedule.interval == "epoch":
        real_total = recipe.epochs
        counts = [(s // steps_per_epoch) * real_total // epochs for s in range(total)]
    else:
        real_total = recipe.epochs * math.ceil(num_images / recipe.batch_size)
        counts = [s * real_total // total for s in range(total)]
    return [base * schedule.factor(t, real_total) for t in counts]
