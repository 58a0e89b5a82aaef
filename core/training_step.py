"""One training step (SGD, Adam or AdamW), used both by the real trainer and by the
differentiable simulation.

The step is functional: parameters, the optimizer's state and model buffers go in and come
out as dicts of tensors, so the simulation can keep the autograd graph across steps
(``create_graph=True``) while the real trainer detaches after each step. Because both paths
run this exact code, a simulation fed the true images reproduces thetaf.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from core.losses import training_loss
from core.recipe import Recipe
from core.types import Tensors

T = TypeVar("T")


@dataclass(frozen=True)
class ClipRule:
    """If the global gradient norm exceeds ``threshold``, rescale the gradient to ``target_norm``.

    torch's ``clip_grad_norm_(max_norm)`` is ``ClipRule(max_norm, max_norm)``; the SimuDy
    reference uses ``ClipRule(20, 5)``. The rescaling is differentiable.
    """

    threshold: float
    target_norm: float


def recipe_clip_rules(recipe: Recipe) -> tuple[ClipRule, ...]:
    """The real training's clipping (``clip_grad_norm``), as clip rules."""
    c = recipe.clip_grad_norm
    return (ClipRule(c, c),) if c else ()


@dataclass(frozen=True)
class OptimizerConfig:
    """The update rule of one step: the recipe's optimizer at one lr."""

    lr: float
    name: str = "sgd"  # sgd, adam or adamw (core.recipe.Optimizer)
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    loss: str = "cross_entropy"  # the recipe's training loss (core.losses)

    @classmethod
    def from_recipe(cls, recipe: Recipe, lr: float | None = None) -> "OptimizerConfig":
        o = recipe.optimizer
        return cls(lr=o.lr if lr is None else lr, name=o.name, momentum=o.momentum,
                   weight_decay=o.weight_decay, nesterov=o.nesterov, betas=tuple(o.betas),
                   eps=o.eps, loss=recipe.loss)

    @property
    def is_sgd(self) -> bool:
        """SGD's update is linear in the gradient (what the low-rank engine and the input span
        rely on); Adam's divides by the gradient's running magnitude."""
        return self.name == "sgd"

    @property
    def slots(self) -> tuple[str, ...]:
        """The names of the optimizer's per-parameter state tensors (``TrainState.optimizer``)."""
        if self.is_sgd:
            return ("momentum",) if self.momentum else ()
        return ("exp_avg", "exp_avg_sq")


@dataclass
class TrainState:
    """Everything that changes during training: trainable parameters, the optimizer's state
    (per slot, then per parameter: SGD's ``momentum`` buffers, Adam's ``exp_avg`` and
    ``exp_avg_sq``; empty before the first step), the model's buffers (BatchNorm statistics)
    and the number of optimizer steps taken (Adam's bias correction). ``frozen``: the parameters
    the recipe does not train, constants of every step."""

    params: Tensors
    optimizer: dict[str, Tensors]
    buffers: Tensors
    steps: int = 0
    frozen: Tensors = field(default_factory=dict)

    def detached(self) -> "TrainState":
        return TrainState({k: v.detach() for k, v in self.params.items()},
                          {s: {k: v.detach() for k, v in t.items()} for s, t in self.optimizer.items()},
                          {k: v.detach() for k, v in self.buffers.items()}, self.steps, self.frozen)

    def carried(self) -> dict[tuple[str, str], torch.Tensor]:
        """The tensors one step hands the next through its update (parameters and optimizer
        state, not buffers), keyed (slot, name) with slot ``param`` for the parameters."""
        out = {("param", k): v for k, v in self.params.items()}
        out.update({(s, k): v for s, t in self.optimizer.items() for k, v in t.items()})
        return out


def set_model_mode(model: nn.Module, recipe: Recipe) -> nn.Module:
    """The recipe's ``model_mode`` on every layer: ``eval`` (BatchNorm uses and keeps its
    running statistics, the paper's protocol) or ``train`` (batch statistics, updated)."""
    return model.train(recipe.model_mode == "train")


def global_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global gradient norm, summed per tensor in parameter order (one formula for the
    real training and the simulation, so both take the same clip decisions)."""
    return torch.sqrt(sum((g * g).sum() for g in grads))


def clip_by_global_norm(grads: list[torch.Tensor], rule: ClipRule) -> list[torch.Tensor]:
    """Rescale to ``rule.target_norm`` when the norm exceeds ``rule.threshold``.

    The decision is read on the host from a norm taken without a graph: a rule that does not
    fire returns the gradients untouched, which is exactly what multiplying by 1 gave (the
    same values, and the branch not taken contributes zero to the image gradient) without
    building the scaling graph in every unrolled step. A rule that fires recomputes the same
    norm with a graph so its rescaling is differentiable."""
    with torch.no_grad():
        fires = bool(global_norm(grads) > rule.threshold)
    if not fires:
        return grads
    scale = rule.target_norm / (global_norm(grads) + 1e-6)
    return [g * scale for g in grads]


def autocast_context(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_step(model: nn.Module, state: TrainState, x: torch.Tensor, y: torch.Tensor,
                  rule: OptimizerConfig, *, clips: tuple[ClipRule, ...] = (), create_graph: bool = False,
                  precision: str = "fp32") -> tuple[TrainState, torch.Tensor]:
    """One step of mini-batch training on the recipe's loss (mean over the batch), as
    torch.optim.SGD, Adam or AdamW take it.

    Gradient order: clip rules (the recipe's, then the simulation's), then the optimizer's
    rule (``sgd_update`` or ``adam_update``). With ``create_graph`` the result stays
    differentiable with respect to ``x`` and to the incoming state.
    """
    names = list(state.params)
    buffers = state.buffers
    if model.training and buffers:
        # BatchNorm updates running statistics in place; never write into the caller's tensors.
        buffers = {k: v.clone() for k, v in buffers.items()}
    with autocast_context(x.device, precision):
        logits = functional_call(model, {**state.params, **state.frozen, **buffers}, (x,))
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # loss and gradients accumulate in full precision
    loss = training_loss(rule.loss, logits, y)
    grads = list(torch.autograd.grad(loss, [state.params[n] for n in names],
                                     create_graph=create_graph))
    for clip in clips:
        grads = clip_by_global_norm(grads, clip)
    steps = state.steps + 1
    new_params: Tensors = {}
    new_slots: dict[str, Tensors] = {s: {} for s in rule.slots}
    for name, g in zip(names, grads):
        p = state.params[name]
        if rule.is_sgd:
            new_params[name], buf = sgd_update(p, g, state.optimizer.get("momentum", {}).get(name), rule)
            if buf is not None:
                new_slots["momentum"][name] = buf
        else:
            new_params[name], new_slots["exp_avg"][name], new_slots["exp_avg_sq"][name] = adam_update(
                p, g, state.optimizer.get("exp_avg", {}).get(name),
                state.optimizer.get("exp_avg_sq", {}).get(name), steps, rule)
    return TrainState(new_params, new_slots, buffers, steps, state.frozen), loss.detach()


def tensor_add(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.add(a, b, alpha=alpha)


def sgd_update(p: T, g: T, prev: T | None, sgd: OptimizerConfig,
               add: Callable[[T, T, float], T] = tensor_add) -> tuple[T, T | None]:  # type: ignore[assignment]
    """torch.optim.SGD's rule for one parameter: weight decay, momentum (the buffer is the
    gradient at the first step), nesterov, update. Returns (new parameter, new momentum buffer
    or None without momentum). ``add(a, b, alpha)`` is ``a + alpha * b``: torch.add (one fused
    op per term, no scaled temporaries of parameter size and a shorter backward when the step
    is unrolled with a graph), or another linear representation's own (the low-rank engine's
    first layer)."""
    if sgd.weight_decay:
        g = add(g, p, sgd.weight_decay)
    buf = None
    if sgd.momentum:
        buf = g if prev is None else add(g, prev, sgd.momentum)
        g = add(g, buf, sgd.momentum) if sgd.nesterov else buf
    return add(p, g, -sgd.lr), buf


def adam_update(p: torch.Tensor, g: torch.Tensor, exp_avg: torch.Tensor | None,
                exp_avg_sq: torch.Tensor | None, step: int,
                rule: OptimizerConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.optim.Adam's (``adam``: weight decay added to the gradient) or AdamW's (``adamw``:
    the parameter shrinks by ``lr * weight_decay`` first) rule for one parameter at optimizer
    step ``step`` (1 at the first), in torch's order of operations. ``None`` moments are the
    zeros torch starts from. Returns (new parameter, exp_avg, exp_avg_sq)."""
    beta1, beta2 = rule.betas
    if rule.weight_decay:
        if rule.name == "adamw":
            p = p * (1 - rule.lr * rule.weight_decay)
        else:
            g = torch.add(g, p, alpha=rule.weight_decay)
    exp_avg = g * (1 - beta1) if exp_avg is None else torch.lerp(exp_avg, g, 1 - beta1)
    exp_avg_sq = (g * (1 - beta2) * g if exp_avg_sq is None  # addcmul's order on torch's zeros
                  else torch.addcmul(exp_avg_sq * beta2, g, g, value=1 - beta2))
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    denom = _sqrt_with_zero_slope(exp_avg_sq) / bias_correction2_sqrt + rule.eps
    return torch.addcdiv(p, exp_avg, denom, value=-rule.lr / bias_correction1), exp_avg, exp_avg_sq


def _sqrt_with_zero_slope(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)``, whose derivative at ``v = 0`` (a parameter no image has moved yet) is taken
    as 0 instead of inf: inf times the zero gradient there would make the image gradient NaN."""
    if not v.requires_grad:
        return v.sqrt()
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, 1.0).sqrt(), 0.0)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive batches in fixed order; the last one may be smaller (drop_last=False)."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def epoch_orders(n: int, epochs: int, shuffle: bool, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    for _ in range(epochs):
        yield torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and horizontal flip (pretraining only)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=generator)
    dy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out
