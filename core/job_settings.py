"""Job settings: what every reconstruction method shares.

A job's settings are one flat JSON object: the shared fields below plus the options of the
chosen ``method``, validated together by that method's settings model
(``core.methods.settings_model``). How the work is executed (device, segment checkpointing,
threads) is not here: see ``core.execution``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from core.schema import UserModel

PAPER_LR_GRID = tuple(round(0.001 * k, 3) for k in range(20, 0, -1))  # 0.020, 0.019, ..., 0.001
DEFAULT_METHOD = "simudy"
MAX_SEED = 2**63 - 1


class LrSearch(UserModel):
    """Unknown training learning rate: score each candidate by the loss after ``updates`` image
    updates from the same start, continue with the lowest."""

    candidates: list[float] = Field(default_factory=lambda: list(PAPER_LR_GRID), min_length=1,
                                    max_length=1000)
    updates: int = Field(50, ge=1, le=1_000_000)
    score_window: int = Field(5, ge=1, le=1_000_000, description="score = mean loss of the last k updates")

    @field_validator("candidates")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not 0 < lr <= 100 for lr in v):
            raise ValueError("every lr candidate must be in (0, 100]")
        return v


class JobSettings(UserModel):
    """The fields every method has. A method's settings model adds its own options."""

    method: str = Field(DEFAULT_METHOD, description="reconstruction method (see /v1/catalog)")
    num_images: int = Field(..., ge=1, le=1_000_000,
                            description="reconstructed images; more than the true N when N is unknown")
    iterations: int = Field(..., ge=1, le=100_000_000, description="optimisation steps")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds the initial images and labels")
    progress_every: int = Field(10, ge=1, le=1_000_000,
                                description="report progress (and sync with the device) every k steps")
    precision: Literal["fp32", "bf16"] | None = Field(
        None, description="ask for a precision: bf16 is faster on GPUs and changes the numbers "
        "slightly; null: the executor's default (fp32 unless configured otherwise)")
    lr_search: LrSearch | None = Field(
        None, description="search the training lr (methods that simulate training only)")
