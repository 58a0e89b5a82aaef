"""SimuDy (Tian et al., ICLR 2025): optimise dummy images so that training on them from theta0
moves the parameters the way the real training did.

One ``SimuDy`` object is one reconstruction: it runs, stops when asked, hands out its whole
state (images, Adam, scheduler, RNG, iteration, history) and resumes from it exactly.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from core.architectures import model_for_recipe
from core.errors import RecipeError
from core.execution import Execution
from core.job_settings import JobSettings
from core.methods import register
from core.methods.base import Cost, IterativeMethod, MethodInputs, MethodResult, balanced_labels, to_cpu
from core.ranking import rank_images, total_gradient_norms
from core.recipe import Optimizer, Recipe
from core.schema import AdamBetas, UserModel
from core.parameters import trainable_split
from core.training_step import ClipRule, TrainState, recipe_clip_rules, set_model_mode
from core import input_span as span_rules
from core import simulation_lowrank
from core.input_span import InputSpan
from core.simulation import DisplacementObjective, SimulationPlan, objective_and_image_grad
from core.simulation_approx import per_step_objective_and_image_grad, truncated_objective_and_image_grad


class Clipping(UserModel):
    """Differentiable global-norm clipping inside the simulation: a gradient whose norm exceeds
    ``threshold`` is rescaled to norm ``target_norm``, during the first ``until_iteration``
    image updates (reference: 20 -> 5 for the first 7,500 of 30,000)."""

    enabled: bool = True
    threshold: float = Field(20.0, gt=0)
    target_norm: float = Field(5.0, gt=0)
    until_iteration: int | None = Field(
        7500, ge=0, le=100_000_000, description="clip while iteration < this; null: for the whole run")


# Image-optimiser defaults. The authors' (reference code): Adam lr 0.01, CosineAnnealingLR with
# T_max 100 (200-update cycles). On MLP recipes the defaults are measured instead: at an equal
# budget of 600 image updates, lr 0.03 with one cosine decay over the run beat the authors'
# values on every MLP target and seed measured (`simudy bench quality`, variants
# lr0.03-one-cosine vs authors: mlp-20, mlp-20-offset2, mlp-20-cifar100, binary-mlp-20;
# BENCHMARKS.md). Other architectures keep the authors' values (no evidence there); the authors'
# values are one setting away: {"image_lr": 0.01, "cosine_t_max": 100}.
AUTHORS_IMAGE_LR, AUTHORS_COSINE_T_MAX = 0.01, 100
MLP_IMAGE_LR = 0.03


def image_schedule(settings: Any, recipe: Recipe) -> tuple[float, int]:
    """(Adam lr, cosine T_max) for a run: the settings', or the defaults for the recipe's
    architecture when left null (see MLP_IMAGE_LR)."""
    mlp = recipe.architecture == "mlp"
    lr = settings.image_lr if settings.image_lr is not None else (MLP_IMAGE_LR if mlp else AUTHORS_IMAGE_LR)
    t_max = settings.cosine_t_max or (settings.iterations if mlp else AUTHORS_COSINE_T_MAX)
    return lr, t_max


class SimudyOptions(UserModel):
    """SimuDy's own settings. Defaults follow the authors' reference code, except the image
    optimiser's lr and schedule on MLP recipes (measured; see MLP_IMAGE_LR) and the input span
    (images kept in the space the first layer's change says the training images span, wherever
    that holds: core/input_span.py; at 600 updates it lifted every MLP target and seed measured,
    binary-mlp-20 from 0.41-0.45 to 0.97, BENCHMARKS.md)."""

    simulated_epochs: int | None = Field(None, ge=1, le=10_000, description="default: the recipe's epochs")
    simulated_lr: float | None = Field(None, gt=0, le=100, description="default: the recipe's lr")
    simulated_batch_size: int | None = Field(None, ge=1, le=100_000, description="default: the recipe's")
    image_lr: float | None = Field(
        None, gt=0, le=1000, description="Adam's lr on the images; null: 0.03 on MLP recipes "
        "(measured at 600 updates, BENCHMARKS.md), the authors' 0.01 otherwise")
    adam_betas: AdamBetas = Field((0.8, 0.9), description="Adam's betas, each in [0, 1)")
    cosine_t_max: int | None = Field(
        None, ge=1, le=100_000_000, description="CosineAnnealingLR period/2, never reset; null: "
        "on MLP recipes the run's iterations (one decay from image_lr to 0 over the whole run, "
        "measured), the authors' 100 otherwise. One decay on any recipe: set it to iterations")
    tv_weight: float = Field(0.001, ge=0, le=1e6, description="weight of TV, summed over dummy batches")
    init_std: float = Field(0.5, gt=0, le=1e3, description="dummy init N(0, std^2) in normalised space")
    clipping: Clipping = Field(default_factory=Clipping)
    rank_by_gradient_norm: bool = Field(
        True, description="rank images by the norm of their total gradient (unknown N)")
    gradient: Literal["exact", "truncated", "per_step"] = Field(
        "exact", description="image gradient: exact (backprop through every unrolled step); "
        "truncated (through the last truncation_window steps only); per_step (one step at a "
        "time with the final parameters' gradient, constant memory, drops cross-step terms). "
        "The approximate ones are faster or smaller and change results")
    truncation_window: int = Field(5, ge=1, le=100_000, description="steps kept by gradient=truncated")
    input_span: Literal["auto", "on", "off"] = Field(
        "auto", description="keep the images in the row space of the first layer's weight change, "
        "which holds every training image when the first layer is linear on the input (MLP) and "
        "trained (not frozen), the recipe trains with SGD (Adam's update leaves the span) without "
        "augmentation (weight decay, when the recipe states it, is taken out), and the change "
        "shows a clear rank "
        "(core/input_span.py). auto: wherever that holds (measured, BENCHMARKS.md); on: refuse "
        "a job where it does not; off: images free (the authors' method)")
    sgd_surrogate_updates: int = Field(
        0, ge=0, le=100_000_000, description="for a recipe trained with Adam or AdamW: the first k "
        "image updates simulate the training with SGD instead (the recipe's lr, schedule and weight "
        "decay, no momentum: cheaper, on MLPs the low-rank engine), then the recipe's optimizer. "
        "0: the recipe's optimizer throughout (on an AdamW MLP at 600 updates it did better than "
        "a surrogate, BENCHMARKS.md); SGD recipes are unaffected")


def simulated_steps(recipe: Recipe, settings: Any) -> int:
    batch = settings.simulated_batch_size or recipe.batch_size
    return math.ceil(settings.num_images / batch) * (settings.simulated_epochs or recipe.epochs)


@register
class SimuDy(IterativeMethod):
    """SimuDy (Tian et al., ICLR 2025): optimise dummy images until training on them from theta0
    moves the parameters the way the real training did (cosine of the displacements, plus TV).

    Needs theta0, thetaf and the training recipe; searches the training lr when it is unknown and
    ranks images by gradient norm when the dataset size is unknown."""

    name: ClassVar[str] = "simudy"
    Options: ClassVar[type[UserModel]] = SimudyOptions
    needs_theta0: ClassVar[bool] = True
    lr_option: ClassVar[str | None] = "simulated_lr"
    default_iterations: ClassVar[int] = 30_000
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "cosine", "tv")

    def __init__(self, inputs: MethodInputs, settings: JobSettings, execution: Execution):
        super().__init__(settings, execution)
        if inputs.theta0 is None:
            raise RecipeError("simudy needs theta0 (the weights before training)")
        s: Any = settings  # the simudy settings model: shared fields + SimudyOptions
        self.recipe = recipe = inputs.recipe
        self.model = set_model_mode(model_for_recipe(recipe).to(self.device), recipe)
        for p in self.model.parameters():
            p.requires_grad_(False)  # the functional state carries the gradients, not the module
        dev = {k: v.to(self.device, torch.float32) if v.is_floating_point() else v.to(self.device)
               for k, v in inputs.theta0.items()}
        params0, frozen0, buffers0 = trainable_split(self.model, dev, recipe)
        paramsf, _, _ = trainable_split(self.model, {k: v.to(self.device) for k, v in inputs.thetaf.items()},
                                        recipe)
        self.state0 = TrainState(params0, {}, buffers0, frozen=frozen0)
        self.objective = DisplacementObjective(params0, {k: v.float() for k, v in paramsf.items()},
                                               s.tv_weight)
        self.simulated_lr = s.simulated_lr or recipe.optimizer.lr
        self.plan = SimulationPlan.for_recipe(
            self.model, recipe, s.num_images, lr=self.simulated_lr, epochs=s.simulated_epochs,
            batch_size=s.simulated_batch_size, precision=self.precision)

        generator = torch.Generator().manual_seed(s.seed)
        self.labels = balanced_labels(s.num_images, recipe.num_classes, generator).to(self.device)
        init = torch.randn((s.num_images, *recipe.image_shape), generator=generator)
        self.images = (init * s.init_std).to(self.device).requires_grad_()
        self.span = self._input_span(s, params0, paramsf)
        if self.span is not None:
            self.span.project_(self.images)
        self.image_lr, t_max = image_schedule(s, recipe)
        self.optimizer = torch.optim.Adam([self.images], lr=self.image_lr, betas=tuple(s.adam_betas))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=t_max)
        self.lowrank = self._lowrank(self.plan)  # the exact low-rank MLP engine, when it applies
        self.surrogate: SimulationPlan | None = None  # the SGD plan of the first updates, if any
        if s.sgd_surrogate_updates and recipe.optimizer.name != "sgd":
            sgd = recipe.model_copy(update={"optimizer": Optimizer(
                lr=recipe.optimizer.lr, weight_decay=recipe.optimizer.weight_decay)})
            self.surrogate = SimulationPlan.for_recipe(
                self.model, sgd, s.num_images, lr=self.simulated_lr, epochs=s.simulated_epochs,
                batch_size=s.simulated_batch_size, precision=self.precision)
            self.surrogate_lowrank = self._lowrank(self.surrogate)

    def _lowrank(self, plan: SimulationPlan) -> simulation_lowrank.LowRankMLPObjective | None:
        if (self.settings.gradient == "exact" and self.execution.fast_paths  # type: ignore[attr-defined]
                and simulation_lowrank.supports(plan, self.state0)):
            return simulation_lowrank.LowRankMLPObjective(plan, self.objective, self.state0)
        return None

    def _input_span(self, s: Any, params0: dict, paramsf: dict) -> InputSpan | None:
        if s.input_span == "off":
            return None
        problems = self.setting_problems(self.recipe, s)
        if problems:
            raise RecipeError(problems[0])
        basis = span_rules.input_span_basis(self.model, self.recipe, params0, paramsf, s.num_images)
        if basis is None and s.input_span == "on":
            raise RecipeError("input_span 'on': the first layer's weight change shows no clear rank "
                              "below full (a first layer narrower than the training images are many, "
                              "weight decay the recipe leaves out or states wrongly, or under weight "
                              "decay fewer dummy images than training images); use 'auto' or 'off'")
        return InputSpan(basis.to(self.device)) if basis is not None else None

    @classmethod
    def setting_problems(cls, recipe: Recipe, settings: JobSettings) -> list[str]:
        if settings.input_span != "on":  # type: ignore[attr-defined]
            return []
        with torch.device("meta"):
            model = model_for_recipe(recipe)
        if span_rules.applies(model, recipe):
            return []
        return ["input_span 'on' needs a first layer that is linear on the input (mlp) and not "
                "frozen, and a recipe trained with SGD without augmentation; use 'auto' or 'off'"]

    @property
    def input_span_rank(self) -> int | None:
        return self.span.rank if self.span is not None else None

    @classmethod
    def trial_settings(cls, full: JobSettings, trial: JobSettings, recipe: Recipe) -> JobSettings:
        # the schedule of the full run (on MLP recipes its default spans the full run's updates)
        return trial.model_copy(update={"cosine_t_max": image_schedule(full, recipe)[1]})

    @classmethod
    def estimate_cost(cls, recipe: Recipe, settings: JobSettings) -> Cost:
        s: Any = settings
        epochs = s.simulated_epochs or recipe.epochs
        return Cost(unrolled_steps=simulated_steps(recipe, s), sample_passes=s.num_images * epochs)

    # -- one image update ----------------------------------------------------------------------
    def clips_at(self, iteration: int) -> tuple[ClipRule, ...]:
        c = self.settings.clipping  # type: ignore[attr-defined]
        active = c.enabled and (c.until_iteration is None or iteration < c.until_iteration)
        return recipe_clip_rules(self.recipe) + ((ClipRule(c.threshold, c.target_norm),) if active else ())

    def step(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        s: Any = self.settings
        clips = self.clips_at(self.iteration)
        plan, lowrank = self.plan, self.lowrank
        if self.surrogate is not None and self.iteration < s.sgd_surrogate_updates:
            plan, lowrank = self.surrogate, self.surrogate_lowrank
        args = (plan, self.objective, self.state0, self.images, self.labels, clips)
        if s.gradient == "truncated":
            value = truncated_objective_and_image_grad(*args, window=s.truncation_window)
        elif s.gradient == "per_step":
            value = per_step_objective_and_image_grad(*args)
        elif lowrank is not None:
            value = lowrank(self.images, self.labels, clips)
        else:
            value = objective_and_image_grad(*args, self.execution.checkpoint_segments)
        if self.span is not None:
            self.span.project_(self.images.grad)
        self.optimizer.step()
        if self.span is not None:
            self.span.project_(self.images)
        self.scheduler.step()
        return value.stacked()

    def out_of_memory_advice(self) -> str:
        return (f"out of GPU memory with {self.settings.num_images} images and "
                f"{self.plan.num_steps} unrolled steps: lower num_images or simulated_epochs, or run "
                "with checkpoint segments (e.g. 1) or precision bf16")

    def non_finite_advice(self) -> str:
        return "lower image_lr or keep clipping enabled"

    # -- state -------------------------------------------------------------------------------
    def method_state(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu(), "labels": self.labels.cpu(),
                "optimizer": to_cpu(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(), "simulated_lr": self.simulated_lr,
                "input_span_rank": self.input_span_rank}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if tuple(state["images"].shape) != tuple(self.images.shape):
            raise RecipeError("reconstruction state does not match num_images / image_shape")
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.device))
        if "input_span_rank" not in state:
            self.span = None  # saved before the input span existed: it ran with free images
        elif state["input_span_rank"] != self.input_span_rank:
            raise RecipeError(f"reconstruction state was saved with input span rank "
                              f"{state['input_span_rank']}, these weights give {self.input_span_rank}")
        self.labels = state["labels"].to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    # -- output ------------------------------------------------------------------------------
    def _unnormalized(self, normalized: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.recipe.normalize.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.recipe.normalize.std).view(1, -1, 1, 1)
        return (normalized * std + mean).clamp(0, 1)

    def preview_images(self) -> torch.Tensor:
        return self._unnormalized(self.images.detach().cpu())

    def result(self) -> MethodResult:
        normalized = self.images.detach().cpu()
        summary: dict[str, Any] = {"simulated_lr": self.simulated_lr,
                                   "simulated_steps": self.plan.num_steps, "ranking": None,
                                   "input_span_rank": self.input_span_rank}
        arrays: dict[str, np.ndarray] = {}
        captions = None
        if self.settings.rank_by_gradient_norm:  # type: ignore[attr-defined]
            norms = total_gradient_norms(self.plan, self.state0, self.images, self.labels,
                                         self.clips_at(self.iteration))
            ranking = rank_images(norms)
            summary["ranking"] = ranking
            arrays["gradient_norm"] = np.asarray(ranking["gradient_norms"], dtype=np.float32)
            arrays["significant"] = np.asarray(ranking["significant"], dtype=bool)
            captions = [("" if s else "x ") + f"{v:.2g}"
                        for v, s in zip(ranking["gradient_norms"], ranking["significant"])]
        return MethodResult(
            images=self._unnormalized(normalized), normalized=normalized,
            labels=self.labels.cpu(), history=self.history_rows(), iterations=self.iteration,
            elapsed_seconds=self.elapsed, summary=summary, arrays=arrays, captions=captions)
