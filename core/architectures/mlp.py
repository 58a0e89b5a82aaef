"""``mlp``: input -> hidden widths -> classes, ReLU.

Bias on the first layer only by default, as in the reference code (``bias: "first"``; also
``"all"`` or ``"none"``). State dict: ``layers.0.weight`` (h1, d), ``layers.0.bias`` (h1),
``layers.1.weight`` (h2, h1), ..., ``layers.K.weight`` (classes, hK).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from core.architectures import ARCHITECTURES


class MLP(nn.Module):
    # a linear map of the flattened input: its change spans the training images (core.input_span)
    input_linear_weight = "layers.0.weight"

    def __init__(self, in_features: int, hidden: list[int], num_classes: int, bias: str = "first"):
        super().__init__()
        if bias not in ("first", "all", "none"):
            raise TypeError(f"bias must be 'first', 'all' or 'none', not {bias!r}")
        widths = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(
            nn.Linear(widths[i], widths[i + 1],
                      bias=(bias == "all") or (bias == "first" and i == 0))
            for i in range(len(widths) - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


@ARCHITECTURES.register("mlp")
def build(options: dict[str, Any], num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
    """Fully connected ReLU network on flattened images. Options: hidden (widths, default
    [1000, 1000]), bias ("first" as in the paper, "all" or "none")."""
    hidden = options.pop("hidden", [1000, 1000])
    if not isinstance(hidden, list) or len(hidden) > 64 or \
            not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 1_000_000 for h in hidden):
        raise TypeError("hidden must be a list of at most 64 widths, each an integer from 1 to 1,000,000")
    bias = options.pop("bias", "first")
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    return MLP(math.prod(image_shape), hidden, num_classes, bias)
