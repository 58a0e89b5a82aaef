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

Weight decay (declared in the recipe) shrinks W1_0 by a factor known in advance: the change is
then ``W1_f - c W1_0 = G X^T`` with ``c`` what SGD's rule (``sgd_update``, momentum included)
makes of W1_0 alone over the real training's steps. Those steps depend on the number of
training images through the batches per epoch; every count up to the dummy set's size is
tried and the clearest cut wins (a dummy set smaller than the training set cannot find it).

When it cannot be trusted, it is not used: augmentation (the span holds the augmented copies),
and any change whose singular values show no clear cut below full rank. Float training leaves
the singular values past the last image near 1e-6 of the largest, a drop of several orders of
magnitude (tested); a first layer narrower than the number of images, or weight decay the
recipe left out (or got wrong), gives a change of full rank with no such drop, and the span is
then off.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn

from core.lr_schedule import step_learning_rates
from core.recipe import Recipe
from core.training_step import OptimizerConfig, sgd_update

# The cut must fall where consecutive singular values drop by at least this factor: far above
# the spread of real images' contributions, far below fp32 training's rounding floor.
SPECTRAL_GAP = 1e3


def input_weight_name(model: nn.Module) -> str | None:
    """The parameter name of the model's linear map of its flattened input, if it has one
    (architectures declare it as ``input_linear_weight``)."""
    return getattr(model, "input_linear_weight", None)


def applies(model: nn.Module, recipe: Recipe) -> bool:
    """Whether the recipe's training keeps the first layer's change in the span of its inputs
    (whether the change also shows the span is for ``input_span_basis`` to see): SGD's updates
    are sums of gradients, each in that span; Adam divides each entry by its own running
    magnitude, which leaves it."""
    name = input_weight_name(model)
    return (name is not None and not recipe.is_frozen(name) and not recipe.augment
            and recipe.optimizer.name == "sgd")


def spectral_cut(singular: torch.Tensor) -> tuple[int, float] | None:
    """(rank, drop) at the largest drop between consecutive descending singular values."""
    if singular.numel() < 2 or singular[0] <= 0:
        return None
    tiny = torch.finfo(singular.dtype).tiny
    drops = singular[:-1] / singular[1:].clamp_min(tiny)
    cut = int(torch.argmax(drops))
    return cut + 1, float(drops[cut])


def span_rank(singular: torch.Tensor) -> int | None:
    """The rank at which descending singular values drop by ``SPECTRAL_GAP`` or more (the
    largest such drop), or None: no clear cut below full rank."""
    cut = spectral_cut(singular)
    return cut[0] if cut is not None and cut[1] >= SPECTRAL_GAP else None


def initial_weight_coefficients(recipe: Recipe, max_images: int) -> list[float]:
    """The multiples of W1_0 left in W1 after the real training, one per possible number of
    steps (training sets of 1 .. ``max_images`` images): 1.0 alone without weight decay. The
    multiple follows SGD's rule with a zero data gradient (everything in it is linear), at each
    step's lr (the recipe's schedule)."""
    sgd = OptimizerConfig.from_recipe(recipe)
    if not sgd.weight_decay:
        return [1.0]
    batches = {math.ceil(n / recipe.batch_size): n for n in range(1, max_images + 1)}
    if recipe.lr_schedule is None:  # a constant lr: every candidate is a prefix of the longest run
        steps = {recipe.epochs * b for b in batches}
        coefs, coef, buf = [], 1.0, None
        for step in range(1, max(steps) + 1):
            coef, buf = sgd_update(coef, 0.0, buf, sgd, _scalar_add)
            if step in steps:
                coefs.append(coef)
        return coefs
    coefs = []
    for n in batches.values():
        coef, buf = 1.0, None
        for lr in step_learning_rates(recipe, n):
            coef, buf = sgd_update(coef, 0.0, buf, replace(sgd, lr=lr), _scalar_add)
        coefs.append(coef)
    return coefs


def _scalar_add(a: float, b: float, alpha: float) -> float:
    return a + alpha * b


def clearest_coefficient(w0: torch.Tensor, wf: torch.Tensor, coefs: list[float], max_images: int) -> float:
    """The candidate ``c`` whose ``wf - c w0`` shows the largest spectral drop. Scored on a
    random sketch of the columns (``max_images`` + 8 of them: the rank that matters is at most
    ``max_images``), so each candidate costs a small SVD instead of a full one."""
    if len(coefs) == 1:
        return coefs[0]
    omega = torch.randn(w0.shape[1], min(w0.shape[1], max_images + 8), dtype=w0.dtype,
                        generator=torch.Generator().manual_seed(0))
    a, b = wf @ omega, w0 @ omega
    drops = [(spectral_cut(torch.linalg.svdvals(a - c * b)) or (0, 0.0))[1] for c in coefs]
    return coefs[max(range(len(coefs)), key=drops.__getitem__)]


def input_span_basis(model: nn.Module, recipe: Recipe, params0: dict[str, torch.Tensor],
                     paramsf: dict[str, torch.Tensor], max_images: int) -> torch.Tensor | None:
    """Orthonormal rows (r, d) spanning the row space of the first layer's change, in the
    model's (normalised, flattened) input space, on the CPU; None where the span does not apply,
    is not clear, or would not constrain anything (r = d). ``max_images``: the most training
    images there can have been (the dummy set's size; under weight decay, a dummy set smaller
    than the training set misses the real number of steps and finds no span)."""
    name = input_weight_name(model)
    if not applies(model, recipe) or name not in params0:
        return None
    w0, wf = params0[name].detach().cpu().double(), paramsf[name].detach().cpu().double()
    coef = clearest_coefficient(w0, wf, initial_weight_coefficients(recipe, max_images), max_images)
    _, singular, vh = torch.linalg.svd(wf - coef * w0, full_matrices=False)
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
