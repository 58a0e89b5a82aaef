"""KKT reconstruction (Haim et al., NeurIPS 2022, binary; Buzaglo et al., NeurIPS 2023,
multi-class): from thetaf, and theta0 when it is given.

Gradient flow on a homogeneous network with a logistic or cross-entropy loss converges in
direction to a KKT point of the max-margin problem, where the parameters are a non-negative
combination of the margins' gradients at the training points:
    thetaf = sum_i lambda_i grad_theta margin(x_i; thetaf),  lambda_i >= 0.
The attack optimises candidates x_i and multipliers lambda_i to satisfy it:
    loss = || theta - (1/M) sum_i lambda_i grad_theta margin_i ||^2
           + box (pixels outside the valid range, squared)
           + 5 * sum_i relu(lambda_min - lambda_i)^2
summed over trainable parameters; margin = s f(x) with s = +-1 for a one-output binary model,
f_y(x) - max_{j != y} f_j(x) otherwise (Buzaglo). M is the number of candidates.

theta is thetaf itself in Haim's statement: their networks start at a ~1e-4 init scale and train
to convergence, so thetaf is (almost) all accumulated gradient. A network trained from a standard
init for a few epochs is not: on the bench's binary MLP, theta0 is 99.99% of ||thetaf||^2 and the
true training points with their best multipliers explain 0.06% of thetaf (random candidates: 0%),
so that objective cannot tell data from noise. When theta0 is given (``target`` auto, or
``change``), theta is thetaf - theta0, which the true points explain to 85% there (random: 0.7%):
what the SimuDy authors' reproduction of this baseline matches (theta0 - thetaf against loss
gradients at thetaf). Where theta0 ~ 0 the two coincide.

Defaults follow the authors' public code (nivha/dataset_reconstruction): its CIFAR-10
vehicles/animals run ``b9dfyspx`` for init scale, x's lr, lambda_min and the ReLU's backward
sharpness; the code's defaults for lambda's lr (1e-4), lambda's init U(0, 1), both optimisers
(SGD, momentum 0.9) and the prior's weights (1 for the box, 5 for lambda_min). Theirs run in
the data's mean-subtracted space; here the candidates live in the model's normalised input
space and the box is the valid pixel range there.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from core.errors import RecipeError
from core.execution import Execution
from core.job_settings import JobSettings
from core.methods import register
from core.methods.base import Cost, IterativeMethod, MethodInputs, MethodResult, balanced_labels, to_cpu
from core.methods.candidates import (FunctionalModel, SmoothReluGradients, box_penalty, num_candidates,
                                     pixel_box, squared_distance, unnormalized)
from core.recipe import Recipe
from core.schema import UserModel
from core.training_step import autocast_context

LAMBDA_PENALTY = 5.0  # the reference's weight on relu(lambda_min - lambda)^2


class KKTOptions(UserModel):
    """The KKT attack's settings; defaults from the authors' code (see the module)."""

    candidate_ratio: float = Field(2.0, ge=1, le=100, description="candidates per expected training "
                                   "image: ratio x num_images are optimised (the paper's comparison: 2)")
    image_lr: float = Field(0.5549, gt=0, le=1e4, description="SGD lr on the candidates (run b9dfyspx)")
    lambda_lr: float = Field(1e-4, gt=0, le=1e4, description="SGD lr on the multipliers (code default)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum of both optimisers")
    init_scale: float = Field(8.857e-4, gt=0, le=1e3, description="candidates start N(0, scale^2)")
    lambda_min: float = Field(0.4983, ge=0, le=1e6, description="multipliers are pushed above this")
    box_weight: float = Field(1.0, ge=0, le=1e6, description="weight of the pixel-range penalty")
    target: Literal["auto", "thetaf", "change"] = Field(
        "auto", description="what the combination must reproduce: thetaf (Haim's statement, for a "
        "network trained from a near-zero init), change (thetaf - theta0: the SimuDy authors' "
        "reproduction, for a network whose theta0 is not negligible), auto: change when theta0 is given")
    relu_alpha: float | None = Field(
        19.14, gt=0, le=1e6, description="ReLUs back-propagate through sigmoid(alpha x) (Haim's "
        "modified ReLU, run b9dfyspx); null: the true ReLU derivative")


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """s * f for one output (labels {0,1} -> s = -1/+1); f_y - max_{j != y} f_j otherwise."""
    if logits.shape[1] == 1:
        return logits[:, 0] * (2 * labels - 1).to(logits.dtype)
    own = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return own - others


def kkt_terms(model: FunctionalModel, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor, *, precision: str = "fp32",
              relu_alpha: float | None = None, origin: dict[str, torch.Tensor] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(||target - (1/M) sum lambda_i grad margin_i||^2, ||target||^2), differentiable in x and
    lambda, where target = theta - origin (origin: theta0, or none: Haim's theta itself); the
    margins' gradients are taken at theta. ``params`` must be leaves that require grad."""
    names = list(params)
    mode = SmoothReluGradients(relu_alpha) if relu_alpha else None
    with autocast_context(x.device, precision):
        if mode is not None:
            with mode:
                logits = model(params, buffers, x)
        else:
            logits = model(params, buffers, x)
    weighted = (lam * margins(logits, labels)).sum() / len(x)
    grads = torch.autograd.grad(weighted, [params[n] for n in names], create_graph=True)
    theta = [params[n].detach() - (origin[n].detach() if origin is not None else 0) for n in names]
    return squared_distance(theta, list(grads)), sum((t * t).sum() for t in theta)


@register
class KKT(IterativeMethod):
    """KKT reconstruction (Haim et al. 2022; Buzaglo et al. 2023): candidates and multipliers
    that make thetaf a KKT point of the max-margin problem on them.

    Needs thetaf only; with theta0 it matches thetaf - theta0 (``target``); 2x num_images
    candidates by default, ranked by their multipliers."""

    name: ClassVar[str] = "kkt"
    Options: ClassVar[type[UserModel]] = KKTOptions
    needs_theta0: ClassVar[bool] = False
    lr_option: ClassVar[str | None] = None
    default_iterations: ClassVar[int] = 50_000  # run b9dfyspx's extraction_epochs
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "kkt", "kkt_relative", "prior", "lambda_mean")

    def __init__(self, inputs: MethodInputs, settings: JobSettings, execution: Execution) -> None:
        super().__init__(settings, execution)
        s: Any = settings
        self.recipe = inputs.recipe
        self.model = FunctionalModel(self.recipe, self.device)
        self.params, self.buffers = self.model.split(inputs.thetaf)
        if s.target == "change" and inputs.theta0 is None:
            raise RecipeError("kkt with target 'change' needs theta0 (the weights before training)")
        self.origin = None  # Haim: thetaf itself (their networks start at ~1e-4 scale)
        if s.target != "thetaf" and inputs.theta0 is not None:
            self.origin = {k: v.detach() for k, v in self.model.split(inputs.theta0)[0].items()}
        self.low, self.high = pixel_box(self.recipe, self.device)
        m = num_candidates(s)
        generator = torch.Generator().manual_seed(s.seed)
        self.labels = balanced_labels(m, self.recipe.num_classes, generator).to(self.device)
        x = torch.randn((m, *self.recipe.image_shape), generator=generator) * s.init_scale
        self.images = x.to(self.device).requires_grad_()
        self.lam = torch.rand(m, generator=generator).to(self.device).requires_grad_()
        self.opt_x = torch.optim.SGD([self.images], lr=s.image_lr, momentum=s.momentum)
        self.opt_l = torch.optim.SGD([self.lam], lr=s.lambda_lr, momentum=s.momentum)

    @classmethod
    def estimate_cost(cls, recipe: Recipe, settings: JobSettings) -> Cost:
        # one forward, its parameter gradient and the gradient of that: ~3 passes per candidate
        return Cost(unrolled_steps=1, sample_passes=3 * num_candidates(settings))

    def step(self) -> torch.Tensor:
        s: Any = self.settings
        self.opt_x.zero_grad(set_to_none=True)
        self.opt_l.zero_grad(set_to_none=True)
        kkt, theta_sq = kkt_terms(self.model, self.params, self.buffers, self.images, self.lam,
                                  self.labels, precision=self.precision, relu_alpha=s.relu_alpha,
                                  origin=self.origin)
        prior = (s.box_weight * box_penalty(self.images, self.low, self.high)
                 + LAMBDA_PENALTY * (s.lambda_min - self.lam).relu().pow(2).sum())
        loss = kkt + prior
        loss.backward(inputs=[self.images, self.lam])
        self.opt_x.step()
        self.opt_l.step()
        return torch.stack([loss.detach(), kkt.detach(), (kkt / theta_sq).detach(), prior.detach(),
                            self.lam.detach().mean()])

    def non_finite_advice(self) -> str:
        return "lower image_lr (or init_scale)"

    def method_state(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu(), "lambda": self.lam.detach().cpu(),
                "labels": self.labels.cpu(), "opt_x": to_cpu(self.opt_x.state_dict()),
                "opt_l": to_cpu(self.opt_l.state_dict())}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if tuple(state["images"].shape) != tuple(self.images.shape):
            raise RecipeError("reconstruction state does not match the candidates' count / image_shape")
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.device))
            self.lam.copy_(state["lambda"].to(self.device))
        self.labels = state["labels"].to(self.device)
        self.opt_x.load_state_dict(state["opt_x"])
        self.opt_l.load_state_dict(state["opt_l"])

    def preview_images(self) -> torch.Tensor:
        return unnormalized(self.images, self.recipe)

    def result(self) -> MethodResult:
        lam = self.lam.detach().cpu()
        order = torch.argsort(lam, descending=True)  # Haim: large multipliers = support vectors
        normalized = self.images.detach().cpu()[order]
        return MethodResult(
            images=unnormalized(normalized, self.recipe), normalized=normalized,
            labels=self.labels.cpu()[order], history=self.history_rows(), iterations=self.iteration,
            elapsed_seconds=self.elapsed, summary={"candidates": len(lam), "ordered_by": "lambda"},
            arrays={"lambda": lam[order].numpy().astype(np.float32)},
            captions=[f"l={v:.2g}" for v in lam[order].tolist()])
