"""A second, trivial reconstruction method, registered from outside the engine (as a plugin is,
through ``SIMUDY_METHOD_MODULES``): the tests run it through the CLI and the service to show
that a method is one registry entry.

Its images move a fraction ``step`` of the way towards the mean of thetaf's first tensor each
iteration; the metrics are the squared distance (``loss``) and the step taken."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from core.execution import Execution
from core.job_settings import JobSettings
from core.methods import register
from core.methods.base import Cost, IterativeMethod, MethodInputs, MethodResult
from core.recipe import Recipe
from core.schema import UserModel


class TrivialOptions(UserModel):
    step: float = Field(0.5, gt=0, le=1, description="fraction of the way moved per iteration")


@register
class Trivial(IterativeMethod):
    """Test only: images that walk towards thetaf's mean value.

    Needs no theta0 and searches no lr."""

    name: ClassVar[str] = "trivial"
    Options: ClassVar[type[UserModel]] = TrivialOptions
    needs_theta0: ClassVar[bool] = False
    lr_option: ClassVar[str | None] = None
    default_iterations: ClassVar[int] = 5
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "moved")

    def __init__(self, inputs: MethodInputs, settings: JobSettings, execution: Execution) -> None:
        super().__init__(settings, execution)
        self.recipe = inputs.recipe
        self.target = next(iter(inputs.thetaf.values())).float().mean().to(self.device)
        self.images = torch.zeros((settings.num_images, *inputs.recipe.image_shape), device=self.device)

    @classmethod
    def estimate_cost(cls, recipe: Recipe, settings: JobSettings) -> Cost:
        return Cost(unrolled_steps=0, sample_passes=settings.num_images)

    def step(self) -> torch.Tensor:
        moved = self.settings.step * (self.target - self.images)  # type: ignore[attr-defined]
        self.images = self.images + moved
        return torch.stack([((self.images - self.target) ** 2).mean(), moved.abs().mean()])

    def method_state(self) -> dict[str, Any]:
        return {"images": self.images.cpu()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.images = state["images"].to(self.device)

    def preview_images(self) -> torch.Tensor:
        return self.images.cpu().clamp(0, 1)

    def result(self) -> MethodResult:
        x = self.images.cpu()
        return MethodResult(images=x.clamp(0, 1), normalized=x,
                            labels=torch.arange(self.settings.num_images) % self.recipe.num_classes,
                            history=self.history_rows(), iterations=self.iteration,
                            elapsed_seconds=self.elapsed, summary={"target": float(self.target)})

