"""The subspace the training images lie in, read from the first layer's weight change.

Why: when a network's first trained layer is a linear map of the flattened input (an MLP), SGD
only ever adds outer products ``delta x^T`` to its weight, with momentum or without and with or
without gradient clipping. Its change ``W1_f - W1_0`` is then a sum of those outer products, so
its row space is spanned by the training images themselves: every training image lies in it, and
its rank is the number of (linearly independent) training images. A reconstruction may keep its
dummy images inside that subspace: noise outside it is never seen by the first layer's update,
so the displacement loss barely pushes it out, and it only blurs the images. Measured in
BENCHMARKS.md (``simudy bench quality``, variant ``no-span``).

Exactness needs no weight decay (decay adds a multiple of W1_0, which is full rank) and full
precision training; the rank is read off the singular values, whose gap at the number of
images is several orders of magnitude in fp32 training (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from core.recipe import Recipe

# Singular values below this fraction of the largest are float rounding of the training, not
# images: fp32 training leaves them near 1e-6 of the largest; an image's share sits far above.
RELATIVE_RANK_TOLERANCE = 1e-4


def input_weight_name(model: nn.Module) -> str | None:
    """The parameter name of the model's linear map of its flattened input, if it has one
    (architectures declare it as ``input_linear_weight``)."""
    return getattr(model, "input_linear_weight", None)


def applies(model: nn.Module, recipe: Recipe) -> bool:
    """Whether the first layer's change is exactly spanned by the training images."""
    return input_weight_name(model) is not None and recipe.optimizer.weight_decay == 0


def input_span_basis(model: nn.Module, recipe: Recipe, params0: dict[str, torch.Tensor],
                     paramsf: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Orthonormal rows (r, d) spanning the row space of the first layer's change, in the
    model's (normalised, flattened) input space; None where it does not apply or would not
    constrain anything (r = d)."""
    name = input_weight_name(model)
    if not applies(model, recipe) or name not in params0:
        return None
    change = (paramsf[name].double() - params0[name].double()).cpu()
    _, singular, vh = torch.linalg.svd(change, full_matrices=False)
    if singular.numel() == 0 or singular[0] == 0:
        return None
    rank = int((singular > singular[0] * RELATIVE_RANK_TOLERANCE).sum())
    if rank >= math.prod(recipe.image_shape):
        return None
    return vh[:rank].to(params0[name].dtype)


class InputSpan:
    """Keeps images (N, C, H, W) inside the span: projects their gradient before the optimiser
    step and the images after it (projected Adam; Adam's per-pixel scaling would leave it)."""

    def __init__(self, basis: torch.Tensor):
        self.basis = basis
        self.rank = basis.shape[0]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return ((flat @ self.basis.T) @ self.basis).reshape(x.shape)

    @torch.no_grad()
    def project_(self, x: torch.Tensor) -> None:
        x.copy_(self.project(x))
