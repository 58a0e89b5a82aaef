"""Device selection. CUDA is touched only when asked for, so a parent process that forks
workers never initialises it."""

from __future__ import annotations

import torch

from core.errors import RecipeError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    if name not in ("cpu", "cuda"):
        raise RecipeError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
