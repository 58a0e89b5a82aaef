"""The differentiable simulation of training on dummy images, and its objective.

``simulate`` unrolls ``training_step`` over the dummy batches for the simulated epochs.
``objective_and_image_grad`` returns the SimuDy loss and fills ``x.grad``, either keeping the
whole unrolled graph or, with ``segment_steps > 0``, recomputing it segment by segment during
the backward pass so memory holds one segment's graph at a time (exact same gradient). Its
values stay on the device (no host sync); the caller decides when to read them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from core.lr_schedule import step_learning_rates
from core.recipe import Recipe
from core.training_step import ClipRule, OptimizerConfig, TrainState, batch_slices, training_step
from core.types import Tensors


@dataclass(frozen=True)
class SimulationPlan:
    """What the simulation unrolls: ``epochs`` passes over ``batches`` of the dummy set, step
    ``t`` at lr ``lrs[t]`` (the recipe's schedule, core.lr_schedule) with the recipe's optimizer."""

    model: nn.Module
    optimizer: OptimizerConfig
    batches: list[slice]
    epochs: int
    lrs: tuple[float, ...]
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if len(self.lrs) != self.num_steps:
            raise ValueError(f"{len(self.lrs)} step lrs for {self.num_steps} steps")

    @classmethod
    def for_recipe(cls, model: nn.Module, recipe: Recipe, num_images: int, *, lr: float | None = None,
                   epochs: int | None = None, batch_size: int | None = None,
                   precision: str = "fp32") -> "SimulationPlan":
        """The recipe's training on ``num_images`` images, or the simulation's choice of lr,
        epochs and batch size where given."""
        epochs = epochs or recipe.epochs
        batch_size = batch_size or recipe.batch_size
        return cls(model, OptimizerConfig.from_recipe(recipe, lr=lr), batch_slices(num_images, batch_size),
                   epochs, tuple(step_learning_rates(recipe, num_images, lr=lr, epochs=epochs,
                                                     batch_size=batch_size)), precision)

    @property
    def num_steps(self) -> int:
        return self.epochs * len(self.batches)

    def step_batch(self, step: int) -> slice:
        return self.batches[step % len(self.batches)]

    def step_optimizer(self, step: int) -> OptimizerConfig:
        """The update rule of one step: the recipe's optimizer, at that step's lr."""
        return replace(self.optimizer, lr=self.lrs[step])


@dataclass
class ObjectiveValue:
    """0-dim tensors on the device, detached."""

    loss: torch.Tensor
    cosine: torch.Tensor
    tv: torch.Tensor

    def stacked(self) -> torch.Tensor:
        return torch.stack([self.loss, self.cosine, self.tv])


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 TV as in the reference: mean |horizontal diff| + mean |vertical diff|."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().mean() + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()


def batched_tv(x: torch.Tensor, batches: list[slice]) -> torch.Tensor:
    return sum(total_variation(x[b]) for b in batches)


def run_steps(plan: SimulationPlan, state: TrainState, x: torch.Tensor, y: torch.Tensor,
              steps: range, clips: tuple[ClipRule, ...], create_graph: bool) -> TrainState:
    for step in steps:
        b = plan.step_batch(step)
        state, _ = training_step(plan.model, state, x[b], y[b], plan.step_optimizer(step), clips=clips,
                                 create_graph=create_graph, precision=plan.precision)
        if not create_graph:
            state = leaf_state(state.detached())
    return state


def simulate(plan: SimulationPlan, state0: TrainState, x: torch.Tensor, y: torch.Tensor,
             clips: tuple[ClipRule, ...] = (), create_graph: bool = True) -> TrainState:
    return run_steps(plan, state0, x, y, range(plan.num_steps), clips, create_graph)


def leaf_state(state: TrainState) -> TrainState:
    """Detached copies that require grad, so a step can differentiate with respect to them."""
    return TrainState({k: v.detach().requires_grad_() for k, v in state.params.items()},
                      {s: {k: v.detach().requires_grad_() for k, v in t.items()}
                       for s, t in state.optimizer.items()},
                      {k: v.detach() for k, v in state.buffers.items()}, state.steps, state.frozen)


class DisplacementObjective:
    """``1 - cos(theta0 - theta_sim, theta0 - thetaf) + tv_weight * sum_batches TV(x_b)`` over
    trainable parameters only. The real displacement and its norm are computed once."""

    def __init__(self, theta0: Tensors, thetaf: Tensors, tv_weight: float):
        self.theta0 = {k: v.detach() for k, v in theta0.items()}
        self.target = {k: (theta0[k] - thetaf[k]).detach() for k in theta0}
        dtype = next(iter(self.target.values())).dtype
        self.target_norm = torch.sqrt(sum((d.double() ** 2).sum() for d in self.target.values())).to(dtype)
        if float(self.target_norm) == 0.0:
            raise ValueError("theta0 and thetaf are identical: nothing was trained")
        self.tv_weight = tv_weight

    def cosine(self, params: Tensors) -> torch.Tensor:
        dot = torch.zeros((), device=self.target_norm.device, dtype=self.target_norm.dtype)
        sq = torch.zeros_like(dot)
        for k, t in self.target.items():
            d = self.theta0[k] - params[k]
            dot = dot + (d * t).sum()
            sq = sq + (d * d).sum()
        return dot / (torch.sqrt(sq) * self.target_norm + 1e-12)


def objective_and_image_grad(plan: SimulationPlan, objective: DisplacementObjective,
                             state0: TrainState, x: torch.Tensor, y: torch.Tensor,
                             clips: tuple[ClipRule, ...], segment_steps: int = 0) -> ObjectiveValue:
    """Compute the SimuDy loss for images ``x`` (a leaf requiring grad) and accumulate its
    gradient into ``x.grad``."""
    tv = batched_tv(x, plan.batches)
    if segment_steps <= 0:
        final = simulate(plan, leaf_state(state0), x, y, clips, create_graph=True)
        cos = objective.cosine(final.params)
        loss = 1 - cos + objective.tv_weight * tv
        loss.backward(inputs=[x])  # never accumulate unused gradients into theta0
        return ObjectiveValue(loss.detach(), cos.detach(), tv.detach())

    # Forward without a graph, keeping the state at each segment boundary.
    bounds = list(range(0, plan.num_steps, segment_steps)) + [plan.num_steps]
    x_const = x.detach()
    saved = [leaf_state(state0)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        saved.append(run_steps(plan, saved[-1], x_const, y, range(a, b), clips, create_graph=False))
    final = leaf_state(saved[-1])
    cos = objective.cosine(final.params)
    loss = 1 - cos + objective.tv_weight * tv
    loss.backward(inputs=[x, *final.params.values()])
    carry = {("param", k): v.grad for k, v in final.params.items()}
    # Backward through each segment in reverse, recomputing it with a graph.
    for i in range(len(bounds) - 2, -1, -1):
        start = leaf_state(saved[i])
        end = run_steps(plan, start, x, y, range(bounds[i], bounds[i + 1]), clips, create_graph=True)
        outs, grads = [], []
        for key, v in end.carried().items():
            g = carry.get(key)
            if g is not None and v.requires_grad:
                outs.append(v)
                grads.append(g)
        inputs = start.carried()
        torch.autograd.backward(outs, grads, inputs=[x, *inputs.values()])
        carry = {key: v.grad for key, v in inputs.items()}
    return ObjectiveValue(loss.detach(), cos.detach(), tv.detach())
