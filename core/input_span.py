"""The subspace the training images lie in, read from the first layer's weight change.

Why: when a network's first trained layer is a linear map of the flattened input (an MLP), SGD
only ever adds outer products ``delta x^T`` to its weight, with momentum or without, with or
without gradient clipping, shuffled or not. Its change ``W1_f - W1_0 = G X^T`` (G: one summed
delta per image) then has its rows in the span of the training images, and when G has a column
per image that is independent of the others (a first layer at least as wide as the images are
many), the two spaces are equal: every training image lies in the row space, and its rank is
the number of linearly independent training images. A reconstruction may keep its dummy images
inside that subspace: noise outside it is never seen by the first layer's update, so the
displacement loss barely pushes it out, and it only blurs the images. Measured in BENCHMARKS.md
(``simudy bench quality``, variants ``input-span`` and ``no-input-span``).

When it cannot be trusted, it is not used: weight decay (it adds a multiple of W1_0, which is
full rank), augmentation (the span holds the augmented copies), and any change whose singular
values show no clear cut below full rank. Float training leaves the singular values past the
last image near 1e-6 of the largest, a drop of several orders of magnitude (tested); a first
layer narrower than the number of images, or weight decay the recipe left out, gives a change
of full rank with no such drop, and the span is then off.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from core.recipe import Recipe

# The cut must fall where consecutive singular values drop by at least this factor: far above
# the spread of real images' contributions, far below fp32 training's rounding floor.
SPECTRAL_GAP = 1e3


def input_weight_name(model: nn.Module) -> str | None:
    """The parameter name of the model's linear map of its flattened input, if it has one
    (architectures declare it as ``input_linear_weight``)."""
    return getattr(model, "input_linear_weight", None)


def applies(model: nn.Module, recipe: Recipe) -> bool:
    """Whether the recipe's training keeps the first layer's change in the span of its inputs
    (whether the change also shows the span is for ``input_span_basis`` to see)."""
    return (input_weight_name(model) is not None and recipe.optimizer.weight_decay == 0
            and not recipe.augment)


def span_rank(singular: torch.Tensor) -> int | None:
    """The rank at which descending singular values drop by ``SPECTRAL_GAP`` or more (the
    largest such drop), or None: no clear cut below full rank."""
    if singular.numel() < 2 or singular[0] <= 0:
        return None
    tiny = torch.finfo(singular.dtype).tiny
    drops = singular[:-1] / singular[1:].clamp_min(tiny)
    cut = int(torch.argmax(drops))
    return cut + 1 if drops[cut] >= SPECTRAL_GAP else None


def input_span_basis(model: nn.Module, recipe: Recipe, params0: dict[str, torch.Tensor],
                     paramsf: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Orthonormal rows (r, d) spanning the row space of the first layer's change, in the
    model's (normalised, flattened) input space, on the CPU; None where the span does not apply,
    is not clear, or would not constrain anything (r = d)."""
    name = input_weight_name(model)
    if not applies(model, recipe) or name not in params0:
        return None
    change = paramsf[name].detach().cpu().double() - params0[name].detach().cpu().double()
    _, singular, vh = torch.linalg.svd(change, full_matrices=False)
    rank = span_rank(singular)
    if rank is None or rank >= math.prod(recipe.image_shape):
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
