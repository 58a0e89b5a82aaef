"""The training losses a recipe can name, and how each turns a model's outputs into a class.

``cross_entropy``: one output per class, softmax cross-entropy (mean over the batch), the
prediction is the largest output. ``logistic``: the binary networks of Haim et al. (2022) and
of the SimuDy paper's binary MLP (d-1000-1000-1): ONE output f, labels y in {0, 1} read as
s = 2y - 1 in {-1, +1}, loss log(1 + exp(-s f)) (mean over the batch), predicted class 1 when
f > 0. The shared training step and the simulation read the loss from here, so simulation and
real training stay one code path for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from core.registry import Registry


@dataclass(frozen=True)
class Loss:
    """``outputs(num_classes)``: the width of the model's last layer; ``value(logits, y)`` the
    batch mean; ``predict(logits)`` the class of each row; ``per_sample(logits, y)`` one loss
    per row (the NTK baseline weights them)."""

    name: str
    outputs: Callable[[int], int]
    value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor], torch.Tensor]
    per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


LOSSES: Registry[Loss] = Registry("loss")


def _logistic(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # log(1 + exp(-s f)) with s = 2y - 1 is binary cross-entropy with logits on y in {0, 1}
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), y.to(logits.dtype))


def _logistic_rows(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), y.to(logits.dtype), reduction="none")


LOSSES.register("cross_entropy")(Loss(
    "cross_entropy", lambda c: c, F.cross_entropy, lambda logits: logits.argmax(1),
    lambda logits, y: F.cross_entropy(logits, y, reduction="none")))
LOSSES.register("logistic")(Loss(
    "logistic", lambda c: 1, _logistic, lambda logits: (logits.reshape(-1) > 0).long(), _logistic_rows))


def get_loss(name: str) -> Loss:
    return LOSSES.get(name)


def training_loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return LOSSES.get(name).value(logits, y)
