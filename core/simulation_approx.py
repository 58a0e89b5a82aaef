"""Approximate image gradients of the SimuDy loss: cheaper or constant-memory, not exact.

The loss value is always the exact one (the full simulation runs); only its gradient with
respect to the images is approximated. Opt-in user settings of the SimuDy method
(``gradient``), because they change results.

- ``truncated``: backpropagate through the last ``window`` unrolled steps only; the state at
  the start of the window is treated as a constant. Memory: ``window`` steps of graph.
- ``per_step``: one step at a time (as in TESLA for dataset distillation): the gradient of the
  loss with respect to the final parameters, v, is taken once, then each step's own
  dependence on the images is pulled back with v, dropping the terms through which a step's
  images change later steps' parameters. Memory: one step's graph; cost about one extra
  forward pass of the simulation.
"""

from __future__ import annotations

import torch

from core.training_step import ClipRule, TrainState
from core.simulation import (DisplacementObjective, ObjectiveValue, SimulationPlan, batched_tv,
                             leaf_state, run_steps)

MODES = ("exact", "truncated", "per_step")


def truncated_objective_and_image_grad(plan: SimulationPlan, objective: DisplacementObjective,
                                       state0: TrainState, x: torch.Tensor, y: torch.Tensor,
                                       clips: tuple[ClipRule, ...], window: int) -> ObjectiveValue:
    tv = batched_tv(x, plan.batches)
    start = max(0, plan.num_steps - window)
    state = run_steps(plan, leaf_state(state0), x.detach(), y, range(start), clips, create_graph=False)
    final = run_steps(plan, leaf_state(state), x, y, range(start, plan.num_steps), clips, create_graph=True)
    cos = objective.cosine(final.params)
    loss = 1 - cos + objective.tv_weight * tv
    loss.backward(inputs=[x])
    return ObjectiveValue(loss.detach(), cos.detach(), tv.detach())


def per_step_objective_and_image_grad(plan: SimulationPlan, objective: DisplacementObjective,
                                      state0: TrainState, x: torch.Tensor, y: torch.Tensor,
                                      clips: tuple[ClipRule, ...]) -> ObjectiveValue:
    tv = batched_tv(x, plan.batches)
    x_const = x.detach()
    final = leaf_state(run_steps(plan, leaf_state(state0), x_const, y, range(plan.num_steps), clips,
                                 create_graph=False))
    cos = objective.cosine(final.params)
    loss = 1 - cos + objective.tv_weight * tv
    loss.backward(inputs=[x, *final.params.values()])
    v = {k: p.grad for k, p in final.params.items()}
    state = leaf_state(state0)
    for step in range(plan.num_steps):
        nxt = run_steps(plan, state, x, y, range(step, step + 1), clips, create_graph=True)
        outs = [nxt.params[k] for k in v if nxt.params[k].requires_grad]
        torch.autograd.backward(outs, [v[k] for k in v if nxt.params[k].requires_grad], inputs=[x])
        state = leaf_state(nxt.detached())
    return ObjectiveValue(loss.detach(), cos.detach(), tv.detach())
