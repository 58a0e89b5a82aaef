"""SimuDy (Tian et al., ICLR 2025): optimise dummy images so that training on them from theta0
moves the parameters the way the real training did.

``SimuDy`` holds one reconstruction: it can run, stop when asked, hand out its whole state
(images, Adam, scheduler, RNG, iteration, history) and resume from it exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from core.architectures import build_model
from core.device import resolve_device
from core.errors import ReconstructionFailed, RecipeError
from core.methods import METHODS
from core.recipe import Recipe
from core.settings import ReconstructionSettings
from core.simulation import DisplacementObjective, SimulationPlan, objective_and_image_grad
from core.trainer import recipe_clips
from core.training import (ClipRule, SGDConfig, TrainState, batch_slices, set_batchnorm_mode,
                           split_state_dict)

Tensors = dict[str, torch.Tensor]
STATE_FORMAT = 1


@dataclass
class Progress:
    iteration: int
    iterations: int
    loss: float
    cosine: float
    tv: float
    elapsed_seconds: float
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        return self.iteration / self.iterations


@dataclass
class ReconstructionResult:
    """``images`` in [0, 1] (N,C,H,W) on the CPU, ``normalized`` the raw optimised tensor."""

    images: torch.Tensor
    normalized: torch.Tensor
    labels: torch.Tensor
    history: list[dict[str, float]]
    simulated_lr: float
    iterations: int
    elapsed_seconds: float
    lr_search: list[dict[str, Any]] | None = None
    ranking: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def balanced_labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """n // C of every class (the remainder to the first classes), shuffled once."""
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=generator)]


def model_for_recipe(recipe: Recipe) -> nn.Module:
    return build_model(recipe.architecture, recipe.arch_options, recipe.num_classes,
                       tuple(recipe.image_shape))


@METHODS.register("simudy")
class SimuDy:
    """SimuDy (Tian et al., ICLR 2025): optimise dummy images until training on them from theta0
    moves the parameters the way the real training did (cosine of the displacements, plus TV).

    One instance is one reconstruction; it runs, stops when asked, and resumes exactly from its
    ``state_dict``."""

    def __init__(self, theta0: Tensors, thetaf: Tensors, recipe: Recipe,
                 settings: ReconstructionSettings, *, model: nn.Module | None = None,
                 device: torch.device | None = None):
        self.recipe, self.settings = recipe, settings
        self.device = device or resolve_device(settings.device)
        if settings.precision == "bf16" and self.device.type != "cuda":
            raise RecipeError("precision 'bf16' needs a CUDA device; use fp32 on the CPU")
        self.model = set_batchnorm_mode((model or model_for_recipe(recipe)).to(self.device),
                                        recipe.batchnorm)
        for p in self.model.parameters():
            p.requires_grad_(False)  # the functional state carries the gradients, not the module
        dev = {k: v.to(self.device, torch.float32) if v.is_floating_point() else v.to(self.device)
               for k, v in theta0.items()}
        params0, buffers0 = split_state_dict(self.model, dev)
        paramsf, _ = split_state_dict(self.model, {k: v.to(self.device) for k, v in thetaf.items()})
        self.state0 = TrainState(params0, {}, buffers0)
        self.objective = DisplacementObjective(params0, {k: v.float() for k, v in paramsf.items()},
                                               settings.tv_weight)
        self.simulated_lr = settings.simulated_lr or recipe.optimizer.lr
        batch_size = settings.simulated_batch_size or recipe.batch_size
        self.plan = SimulationPlan(
            model=self.model, sgd=SGDConfig.from_recipe(recipe, lr=self.simulated_lr),
            batches=batch_slices(settings.num_images, batch_size),
            epochs=settings.simulated_epochs or recipe.epochs, precision=settings.precision)

        generator = torch.Generator().manual_seed(settings.seed)
        self.labels = balanced_labels(settings.num_images, recipe.num_classes, generator).to(self.device)
        init = torch.randn((settings.num_images, *recipe.image_shape), generator=generator)
        self.images = (init * settings.init_std).to(self.device).requires_grad_()
        self.optimizer = torch.optim.Adam([self.images], lr=settings.image_lr,
                                          betas=tuple(settings.adam_betas))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=settings.cosine_t_max)
        self.iteration = 0
        self.elapsed = 0.0
        self.history: list[tuple[int, float, float, float]] = []

    # -- running ---------------------------------------------------------------------------
    def clips_at(self, iteration: int) -> tuple[ClipRule, ...]:
        c = self.settings.clipping
        active = c.enabled and (c.until_iteration is None or iteration < c.until_iteration)
        return recipe_clips(self.recipe) + ((ClipRule(c.threshold, c.target_norm),) if active else ())

    def step(self) -> tuple[float, float, float]:
        """One image update; returns (loss, cosine, tv)."""
        self.optimizer.zero_grad(set_to_none=True)
        try:
            value = objective_and_image_grad(self.plan, self.objective, self.state0, self.images,
                                             self.labels, self.clips_at(self.iteration),
                                             self.settings.checkpoint_segments)
        except torch.cuda.OutOfMemoryError:
            raise ReconstructionFailed(
                f"out of GPU memory with {self.settings.num_images} images and "
                f"{self.plan.num_steps} unrolled steps: lower num_images or simulated_epochs, or set "
                "checkpoint_segments (e.g. 1) or precision bf16") from None
        if not math.isfinite(value.loss) or not torch.isfinite(self.images.grad).all():
            raise ReconstructionFailed(
                f"the loss became non-finite at iteration {self.iteration + 1}: lower image_lr "
                "or keep clipping enabled")
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        self.history.append((self.iteration, value.loss, value.cosine, value.tv))
        return value.loss, value.cosine, value.tv

    def run(self, *, on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None, until: int | None = None) -> bool:
        """Run to ``until`` (default: all iterations). Returns True when finished, False when
        ``should_stop()`` asked to stop (state stays consistent: call ``state_dict``)."""
        target = min(until or self.settings.iterations, self.settings.iterations)
        every = self.settings.progress_every
        while self.iteration < target:
            if should_stop and should_stop():
                return False
            t0 = time.perf_counter()
            loss, cos, tv = self.step()
            self.elapsed += time.perf_counter() - t0
            if on_progress and (self.iteration % every == 0 or self.iteration == target):
                on_progress(self.progress())
        return True

    @property
    def finished(self) -> bool:
        return self.iteration >= self.settings.iterations

    def progress(self) -> Progress:
        it, total = self.iteration, self.settings.iterations
        _, loss, cos, tv = self.history[-1] if self.history else (0, float("nan"), float("nan"), float("nan"))
        eta = (self.elapsed / it) * (total - it) if it else None
        return Progress(it, total, loss, cos, tv, self.elapsed, eta)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly; loadable with ``torch.load(weights_only=True)``."""
        return {
            "format": STATE_FORMAT,
            "settings": self.settings.model_dump_json(),
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "images": self.images.detach().cpu(),
            "labels": self.labels.cpu(),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 4),
            "rng": torch.get_rng_state(),
            "simulated_lr": self.simulated_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise RecipeError("reconstruction state has an unknown format")
        if tuple(state["images"].shape) != tuple(self.images.shape):
            raise RecipeError("reconstruction state does not match num_images / image_shape")
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.device))
        self.labels = state["labels"].to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self.history = [(int(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in state["history"].tolist()]
        torch.set_rng_state(state["rng"])

    # -- output ------------------------------------------------------------------------------
    def result(self) -> ReconstructionResult:
        normalized = self.images.detach().cpu()
        mean = torch.tensor(self.recipe.normalize.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.recipe.normalize.std).view(1, -1, 1, 1)
        return ReconstructionResult(
            images=(normalized * std + mean).clamp(0, 1), normalized=normalized,
            labels=self.labels.cpu(), history=self.history_dicts(),
            simulated_lr=self.simulated_lr, iterations=self.iteration,
            elapsed_seconds=self.elapsed)

    def history_dicts(self) -> list[dict[str, float]]:
        return [{"iteration": i, "loss": l, "cosine": c, "tv": t} for i, l, c, t in self.history]


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
