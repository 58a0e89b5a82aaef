"""Unknown dataset size (paper section 4.5): with more dummy images than the true N, rank each
image by the norm of its total gradient over the simulated training. Images that matched real
ones keep large gradients; surplus ones become "insignificant" with small norms.

Per-sample gradients are taken at every simulated step with ``torch.func.vmap`` (BatchNorm in
eval mode, since a single sample has no batch statistics) and summed over the steps where the
image was in the batch. The split into significant / insignificant is the two-group split of
the log norms with the largest between-group variance, accepted only when the small group's
mean norm is below ``ratio`` times the large group's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from core.losses import training_loss
from core.training_step import ClipRule, TrainState, training_step
from core.simulation import SimulationPlan, leaf_state
from core.types import Tensors


def total_gradient_norms(plan: SimulationPlan, state0: TrainState, x: torch.Tensor,
                         y: torch.Tensor, clips: tuple[ClipRule, ...] = ()) -> torch.Tensor:
    model = plan.model
    was_training = model.training
    x, y = x.detach(), y.detach()
    totals: dict[int, dict[str, torch.Tensor]] = {}
    state = leaf_state(state0)

    def sample_loss(params: Tensors, buffers: Tensors, xi: torch.Tensor, yi: torch.Tensor):
        logits = functional_call(model, {**params, **buffers}, (xi[None],))
        return training_loss(plan.optimizer.loss, logits, yi[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, None, 0, 0))
    for step in range(plan.num_steps):
        b = plan.step_batch(step)
        model.eval()
        params = {k: v.detach() for k, v in state.params.items()}
        g = per_sample(params, {**state.frozen, **state.buffers}, x[b], y[b])
        model.train(was_training)
        for local, idx in enumerate(range(b.start, b.stop)):
            acc = totals.setdefault(idx, {k: torch.zeros_like(v) for k, v in params.items()})
            for k in acc:
                acc[k] += g[k][local]
        state, _ = training_step(model, state, x[b], y[b], plan.step_optimizer(step), clips=clips,
                                 precision=plan.precision)
        state = leaf_state(state.detached())
    return torch.stack([torch.sqrt(sum((t.double() ** 2).sum() for t in totals[i].values()))
                        for i in range(len(x))]).float().cpu()


def split_significant(norms: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """Boolean mask of significant images (all True when no clear low group exists)."""
    n = len(norms)
    if n < 3:
        return np.ones(n, dtype=bool)
    logs = np.log(np.maximum(norms, 1e-12))
    order = np.argsort(logs)
    sorted_logs = logs[order]
    best_k, best_var = 0, -1.0
    for k in range(1, n):
        lo, hi = sorted_logs[:k], sorted_logs[k:]
        var = k * (n - k) * (lo.mean() - hi.mean()) ** 2
        if var > best_var:
            best_k, best_var = k, var
    low, high = norms[order[:best_k]], norms[order[best_k:]]
    mask = np.ones(n, dtype=bool)
    if low.mean() < ratio * high.mean():
        mask[order[:best_k]] = False
    return mask


def rank_images(norms: torch.Tensor, ratio: float = 0.5) -> dict[str, Any]:
    values = norms.numpy().astype(np.float64)
    significant = split_significant(values, ratio)
    order = np.argsort(-values)
    return {
        "order": [int(i) for i in order],  # most significant first
        "gradient_norms": [float(v) for v in values],
        "significant": [bool(s) for s in significant],
        "estimated_num_images": int(significant.sum()),
    }
