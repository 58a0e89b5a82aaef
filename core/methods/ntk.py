"""NTK reconstruction (Loo et al., ICLR 2024): from theta0 and thetaf, match the parameter
change with the linearised (tangent-kernel) training dynamics.

In the NTK regime training moves the parameters along the span of the training points'
tangent features: thetaf - theta0 = sum_i sum_k alpha_ik grad_theta f_k(x_i; theta0). The attack
optimises candidate images and their coefficients so that this combination matches the real
change. Two forms of the combination (``coefficients``):

- ``outputs``: one coefficient per candidate and output, gradients of the outputs f_k: the
  linearised dynamics exactly;
- ``loss``: one coefficient per candidate, gradients of its training loss under an assigned
  label (the per-sample-loss form of the SimuDy authors' reproduction of Loo et al., the code
  behind the paper's Loo figures).

and of where the tangent features are taken (``tangent_at``): ``theta0`` (the NTK statement) or
``both`` (a separate set of coefficients at theta0 and at thetaf, as that reproduction does, for
networks that leave the kernel regime).

The objective follows that reproduction: the squared distance, scaled by a schedule over the
iterations (l2_schedule: [until_iteration, weight] pairs), then, from ``cosine_after``,
``cosine_weight`` x (1 - cos) + ``tv_weight`` x TV. Its defaults: candidates N(0, 0.5^2) in the
normalised space, Adam (lr 3e-4, betas 0.8/0.9) with cosine annealing (T_max 2000) on the images,
SGD (lr 1e-6, momentum 0.9) on the coefficients, started U(-0.5, 0.5), 2N candidates, 100,000
iterations.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from core.errors import RecipeError
from core.execution import Execution
from core.job_settings import JobSettings
from core.losses import get_loss
from core.methods import register
from core.methods.base import Cost, IterativeMethod, MethodInputs, MethodResult, balanced_labels, to_cpu
from core.methods.candidates import FunctionalModel, cosine, num_candidates, squared_distance, unnormalized
from core.recipe import Recipe
from core.schema import AdamBetas, UserModel
from core.training_step import autocast_context
from core.simulation import total_variation

REFERENCE_L2_SCHEDULE = ((600, 0.01), (1600, 1 / 30), (4000, 0.05), (8000, 1.0), (12000, 5.0))


class NTKOptions(UserModel):
    """The NTK attack's settings; defaults from the SimuDy authors' reproduction (see the module)."""

    candidate_ratio: float = Field(2.0, ge=1, le=100, description="candidates per expected training "
                                   "image: ratio x num_images are optimised (the paper's comparison: 2)")
    coefficients: Literal["loss", "outputs"] = Field(
        "loss", description="loss: one coefficient per candidate on its loss gradient; outputs: one "
        "per candidate and output on the output gradients (the linearised dynamics)")
    tangent_at: Literal["theta0", "both"] = Field(
        "both", description="tangent features at theta0 only, or at theta0 and thetaf")
    image_lr: float = Field(3e-4, gt=0, le=1e3, description="Adam's lr on the candidates")
    adam_betas: AdamBetas = Field((0.8, 0.9), description="Adam's betas, each in [0, 1)")
    cosine_t_max: int = Field(2000, ge=1, le=100_000_000, description="CosineAnnealingLR period/2 (images)")
    coefficient_lr: float = Field(1e-6, gt=0, le=1e3, description="SGD lr on the coefficients")
    coefficient_momentum: float = Field(0.9, ge=0, lt=1)
    init_std: float = Field(0.5, gt=0, le=1e3, description="candidates start N(0, std^2), normalised space")
    l2_schedule: list[tuple[int, float]] = Field(
        default_factory=lambda: list(REFERENCE_L2_SCHEDULE), max_length=100,
        description="[until_iteration, weight]: the squared distance times weight while iteration < until")
    cosine_after: int | None = Field(12_000, ge=0, le=100_000_000, description="from this iteration the "
                                     "loss is the cosine form; null: the squared distance throughout")
    cosine_weight: float = Field(30.0, ge=0, le=1e6)
    tv_weight: float = Field(0.001, ge=0, le=1e6, description="weight of TV in the cosine form")


def l2_weight(schedule: list[tuple[int, float]] | list[list[Any]], iteration: int) -> float:
    """The schedule's weight at ``iteration`` (the last weight after its last bound)."""
    for until, weight in schedule:
        if iteration < until:
            return float(weight)
    return float(schedule[-1][1]) if schedule else 1.0


def tangent_combination(model: FunctionalModel, params: dict[str, torch.Tensor],
                        buffers: dict[str, torch.Tensor], x: torch.Tensor, coef: torch.Tensor,
                        labels: torch.Tensor, coefficients: str, loss_name: str,
                        precision: str = "fp32") -> list[torch.Tensor]:
    """sum_i coef_i . grad_theta (f(x_i) or loss_i) at ``params`` (leaves requiring grad),
    differentiable in ``x`` and ``coef``; one tensor per parameter."""
    names = list(params)
    with autocast_context(x.device, precision):
        logits = model(params, buffers, x)
    if coefficients == "outputs":
        weighted = (coef * logits).sum()
    else:
        weighted = (coef[:, 0] * get_loss(loss_name).per_sample(logits, labels)).sum()
    return list(torch.autograd.grad(weighted, [params[n] for n in names], create_graph=True))


@register
class NTK(IterativeMethod):
    """NTK reconstruction (Loo et al., ICLR 2024): candidates whose tangent features, combined
    with learnt coefficients, reproduce the parameter change thetaf - theta0.

    Needs theta0 and thetaf; 2x num_images candidates by default."""

    name: ClassVar[str] = "ntk"
    Options: ClassVar[type[UserModel]] = NTKOptions
    needs_theta0: ClassVar[bool] = True
    lr_option: ClassVar[str | None] = None
    default_iterations: ClassVar[int] = 100_000
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "l2", "l2_relative", "cosine", "tv")

    def __init__(self, inputs: MethodInputs, settings: JobSettings, execution: Execution) -> None:
        super().__init__(settings, execution)
        if inputs.theta0 is None:
            raise RecipeError("ntk needs theta0 (the weights before training)")
        s: Any = settings
        self.recipe = inputs.recipe
        self.model = FunctionalModel(self.recipe, self.device)
        params0, self.buffers0 = self.model.split(inputs.theta0)
        paramsf, self.buffersf = self.model.split(inputs.thetaf)
        self.points = [(params0, self.buffers0)] + ([(paramsf, self.buffersf)] if s.tangent_at == "both" else [])
        self.target = [(paramsf[k] - params0[k]).detach() for k in params0]
        self.target_sq = sum((t * t).sum() for t in self.target)
        if float(self.target_sq) == 0.0:
            raise RecipeError("theta0 and thetaf are identical: nothing was trained")
        m = num_candidates(s)
        generator = torch.Generator().manual_seed(s.seed)
        self.labels = balanced_labels(m, self.recipe.num_classes, generator).to(self.device)
        x = torch.randn((m, *self.recipe.image_shape), generator=generator) * s.init_std
        self.images = x.to(self.device).requires_grad_()
        width = self.recipe.num_outputs if s.coefficients == "outputs" else 1
        coef = torch.rand((len(self.points), m, width), generator=generator) - 0.5
        self.coef = coef.to(self.device).requires_grad_()
        self.opt_x = torch.optim.Adam([self.images], lr=s.image_lr, betas=tuple(s.adam_betas))
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_x, T_max=s.cosine_t_max)
        self.opt_c = torch.optim.SGD([self.coef], lr=s.coefficient_lr, momentum=s.coefficient_momentum)

    @classmethod
    def estimate_cost(cls, recipe: Recipe, settings: JobSettings) -> Cost:
        points = 2 if settings.tangent_at == "both" else 1  # type: ignore[attr-defined]
        return Cost(unrolled_steps=1, sample_passes=3 * points * num_candidates(settings))

    def combination(self) -> list[torch.Tensor]:
        s: Any = self.settings
        total: list[torch.Tensor] | None = None
        for (params, buffers), coef in zip(self.points, self.coef):
            g = tangent_combination(self.model, params, buffers, self.images, coef, self.labels,
                                    s.coefficients, self.recipe.loss, self.precision)
            total = g if total is None else [a + b for a, b in zip(total, g)]
        assert total is not None
        return total

    def objective(self, iteration: int) -> tuple[torch.Tensor, ...]:
        s: Any = self.settings
        combo = self.combination()
        l2 = squared_distance(combo, self.target)
        cos = cosine(combo, self.target)
        tv = total_variation(self.images)
        if s.cosine_after is not None and iteration >= s.cosine_after:
            loss = s.cosine_weight * (1 - cos) + s.tv_weight * tv
        else:
            loss = l2_weight(s.l2_schedule, iteration) * l2
        return loss, l2, cos, tv

    def step(self) -> torch.Tensor:
        self.opt_x.zero_grad(set_to_none=True)
        self.opt_c.zero_grad(set_to_none=True)
        loss, l2, cos, tv = self.objective(self.iteration)
        loss.backward(inputs=[self.images, self.coef])
        self.opt_x.step()
        self.opt_c.step()
        self.scheduler.step()
        return torch.stack([loss.detach(), l2.detach(), (l2 / self.target_sq).detach(), cos.detach(),
                            tv.detach()])

    def non_finite_advice(self) -> str:
        return "lower image_lr or coefficient_lr"

    def method_state(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu(), "coefficients": self.coef.detach().cpu(),
                "labels": self.labels.cpu(), "opt_x": to_cpu(self.opt_x.state_dict()),
                "opt_c": to_cpu(self.opt_c.state_dict()), "scheduler": self.scheduler.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if tuple(state["images"].shape) != tuple(self.images.shape) or \
                tuple(state["coefficients"].shape) != tuple(self.coef.shape):
            raise RecipeError("reconstruction state does not match the candidates / coefficients")
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.device))
            self.coef.copy_(state["coefficients"].to(self.device))
        self.labels = state["labels"].to(self.device)
        self.opt_x.load_state_dict(state["opt_x"])
        self.opt_c.load_state_dict(state["opt_c"])
        self.scheduler.load_state_dict(state["scheduler"])

    def preview_images(self) -> torch.Tensor:
        return unnormalized(self.images, self.recipe)

    def result(self) -> MethodResult:
        s: Any = self.settings
        normalized = self.images.detach().cpu()
        labels = self.labels.cpu()
        if s.coefficients == "outputs":  # no label was assigned: the class thetaf gives it
            params, buffers = self.points[-1]
            with torch.no_grad():
                logits = self.model({k: v.detach() for k, v in params.items()}, buffers, self.images.detach())
            labels = get_loss(self.recipe.loss).predict(logits).cpu()
        return MethodResult(
            images=unnormalized(normalized, self.recipe), normalized=normalized, labels=labels,
            history=self.history_rows(), iterations=self.iteration, elapsed_seconds=self.elapsed,
            summary={"candidates": len(normalized), "coefficients": s.coefficients,
                     "tangent_at": s.tangent_at},
            arrays={"coefficients": self.coef.detach().cpu().numpy()})
