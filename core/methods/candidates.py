"""What the two baselines (KKT and NTK) share: the audited model as a function of its
parameters, how many candidates, the valid pixel box and its penalty, Haim et al.'s
smooth-ReLU backward, and the images back in [0, 1].

Both optimise a batch of candidate images directly against a condition on the weights (no
simulated training), so they reconstruct more candidates than the expected training-set size:
``candidate_ratio`` x ``num_images`` (2 in the papers' comparison), and the evaluation pairs
the best of them with the originals.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from core.architectures import model_for_recipe
from core.recipe import Recipe
from core.parameters import trainable_split
from core.types import Tensors


def num_candidates(settings: Any) -> int:
    return math.ceil(settings.candidate_ratio * settings.num_images)


class FunctionalModel:
    """The recipe's model in eval mode (BatchNorm on its running statistics, so candidates do
    not interact), called with explicit parameters."""

    def __init__(self, recipe: Recipe, device: torch.device) -> None:
        self.recipe = recipe
        self.model = model_for_recipe(recipe).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device

    def split(self, state: Tensors) -> tuple[Tensors, Tensors]:
        """(trained parameters as float32 leaves that require grad, the rest: frozen parameters
        and buffers) of a checkpoint."""
        params, frozen, buffers = trainable_split(self.model, state, self.recipe)
        return ({k: v.to(self.device, torch.float32).requires_grad_() for k, v in params.items()},
                {k: v.to(self.device) for k, v in {**frozen, **buffers}.items()})

    def __call__(self, params: Tensors, buffers: Tensors, x: torch.Tensor) -> torch.Tensor:
        """The outputs, in float32 or wider even under bf16 autocast."""
        out = functional_call(self.model, {**params, **buffers}, (x,))
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


class _GatedReLU(torch.autograd.Function):
    """relu forward; backward multiplies by sigmoid(alpha * x) instead of the step function,
    written with differentiable operations so a gradient of it can be differentiated again."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return torch.relu(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(ctx.alpha * x), None


_RELUS = (torch.relu, torch.relu_, F.relu, torch.Tensor.relu, torch.Tensor.relu_)


class SmoothReluGradients(TorchFunctionMode):
    """Within this mode every ReLU of any architecture (``torch.relu``, ``F.relu``,
    ``nn.ReLU``, in place or not) keeps its forward value but back-propagates through
    sigmoid(alpha * x): Haim et al.'s "modified ReLU" for the reconstruction, which lets the
    activation pattern inside the KKT gradient move with the candidates."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _RELUS:
            return _GatedReLU.apply(args[0], self.alpha)
        return func(*args, **(kwargs or {}))


def pixel_box(recipe: Recipe, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid images' range in the model's (normalised) input space, per channel."""
    mean = torch.tensor(recipe.normalize.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(recipe.normalize.std, device=device).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def box_penalty(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """sum of squared excursions outside [low, high] (Haim et al.'s prior on the pixels)."""
    return (x - high).relu().pow(2).sum() + (low - x).relu().pow(2).sum()


def unnormalized(x: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    mean = torch.tensor(recipe.normalize.mean).view(1, -1, 1, 1)
    std = torch.tensor(recipe.normalize.std).view(1, -1, 1, 1)
    return (x.detach().cpu() * std + mean).clamp(0, 1)


def squared_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum(((u - v) ** 2).sum() for u, v in zip(a, b))


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    dot = sum((u * v).sum() for u, v in zip(a, b))
    na = torch.sqrt(sum((u * u).sum() for u in a))
    nb = torch.sqrt(sum((v * v).sum() for v in b))
    return dot / (na * nb + 1e-20)

