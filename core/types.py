"""Type aliases shared across the engine (one home, so signatures read the same everywhere)."""

from __future__ import annotations

from typing import Any, Callable

import torch

Tensors = dict[str, torch.Tensor]
"""A state dict, or part of one: tensor name -> tensor."""

JSONDict = dict[str, Any]
"""A JSON object as Python data."""

StopCheck = Callable[[], bool]
"""Asked between iterations; True stops the run at a consistent state."""
