"""How a reconstruction is executed, as opposed to what it computes.

The device, the default precision, segment checkpointing and the thread count belong to the
machine that runs the work: the worker reads them from its configuration, the CLI from its
flags. They are not part of what a user submits, with one exception: a job may ask for a
``precision`` (fp32 or bf16), because bf16 changes the numbers; a job that does not ask gets
the executor's default. CUDA is touched only when a device is resolved, so a parent process
that forks workers never initialises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from core.errors import RecipeError

Precision = Literal["fp32", "bf16"]
DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    if name not in DEVICE_NAMES:
        raise RecipeError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@dataclass(frozen=True)
class Execution:
    """``device``: auto, cpu or cuda. ``precision``: the default when a job does not ask.
    ``checkpoint_segments``: 0 keeps the whole unrolled graph; k recomputes it k steps at a
    time in the backward pass (less memory, about one more forward). ``threads``: CPU threads
    for torch (None: torch's default)."""

    device: str = "auto"
    precision: Precision = "fp32"
    checkpoint_segments: int = 0
    threads: int | None = None
    fast_paths: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICE_NAMES:
            raise RecipeError(f"unknown device {self.device!r}: use auto, cpu or cuda")
        if self.precision not in ("fp32", "bf16"):
            raise RecipeError(f"unknown precision {self.precision!r}: use fp32 or bf16")
        if self.checkpoint_segments < 0:
            raise RecipeError("checkpoint_segments must be 0 (off) or a positive number of steps")
        if self.threads is not None and self.threads < 1:
            raise RecipeError("threads must be at least 1")

    def torch_device(self) -> torch.device:
        """Resolve the device (and apply the thread count); touches CUDA only here."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return resolve_device(self.device)

    def precision_for(self, requested: Precision | None) -> Precision:
        return requested or self.precision
