"""Reconstruction settings: everything about *how* to reconstruct (the recipe says how the
model was trained). Defaults follow the authors' reference code."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.recipe import parse_json_model

PAPER_LR_GRID = tuple(round(0.001 * k, 3) for k in range(20, 0, -1))  # 0.020, 0.019, ..., 0.001


class Clipping(BaseModel):
    """Differentiable global-norm clipping inside the simulation: a gradient whose norm exceeds
    ``threshold`` is rescaled to norm ``target_norm``, during the first ``until_iteration``
    image updates (reference: 20 -> 5 for the first 7,500 of 30,000)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    threshold: float = Field(20.0, gt=0)
    target_norm: float = Field(5.0, gt=0)
    until_iteration: int | None = Field(
        7500, ge=0, description="clip while iteration < this; null: for the whole run")


class LrSearch(BaseModel):
    """Unknown training learning rate: score each candidate by the loss after ``updates`` image
    updates from the same start, continue with the lowest."""

    model_config = ConfigDict(extra="forbid")
    candidates: list[float] = Field(default_factory=lambda: list(PAPER_LR_GRID), min_length=1)
    updates: int = Field(50, ge=1)
    score_window: int = Field(5, ge=1, description="score = mean loss of the last k updates")


class ReconstructionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "num_images": 20, "iterations": 500, "image_lr": 0.01, "tv_weight": 0.001, "seed": 0}]})

    method: str = Field("simudy", description="reconstruction method (registry key)")
    num_images: int = Field(..., ge=1, description="dummy images; more than the true N when N is unknown")
    iterations: int = Field(30_000, ge=1, description="image updates")
    simulated_epochs: int | None = Field(None, ge=1, description="default: the recipe's epochs")
    simulated_lr: float | None = Field(None, gt=0, description="default: the recipe's lr")
    simulated_batch_size: int | None = Field(None, ge=1, description="default: the recipe's")
    image_lr: float = Field(0.01, gt=0)
    adam_betas: tuple[float, float] = (0.8, 0.9)
    cosine_t_max: int = Field(100, ge=1, description="CosineAnnealingLR period/2, never reset")
    tv_weight: float = Field(0.001, ge=0, description="weight of TV, summed over dummy batches")
    init_std: float = Field(0.5, gt=0, description="dummy init N(0, std^2) in normalised space")
    clipping: Clipping = Field(default_factory=Clipping)
    lr_search: LrSearch | None = Field(None, description="set to search the training lr")
    rank_by_gradient_norm: bool = Field(
        True, description="rank images by the norm of their total gradient (unknown N)")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_segments: int = Field(
        0, ge=0, description="0: keep the whole unrolled graph; k: recompute it in segments of "
        "k steps during the backward pass (less memory, about one more forward)")
    progress_every: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _method_known(self) -> "ReconstructionSettings":
        from core.methods import method_names

        if self.method not in method_names():
            raise ValueError(f"unknown method {self.method!r} (known: {', '.join(method_names())})")
        return self


def parse_settings(data: dict[str, Any] | str | bytes) -> ReconstructionSettings:
    return parse_json_model(ReconstructionSettings, data, "settings")
