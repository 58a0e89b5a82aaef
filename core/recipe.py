"""The training recipe: how the audited model went from theta0 to thetaf.

One JSON schema shared by the CLI (``--recipe R.json``) and the API (``recipe`` field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import RecipeError

M = TypeVar("M", bound=BaseModel)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class Normalize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: list[float] = Field(default_factory=lambda: list(CIFAR10_MEAN))
    std: list[float] = Field(default_factory=lambda: list(CIFAR10_STD))

    @field_validator("std")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(s <= 0 for s in v):
            raise ValueError("every std must be positive")
        return v


class Optimizer(BaseModel):
    """SGD as ``torch.optim.SGD`` defines it (momentum buffer starts at the first gradient;
    weight decay added to the gradient before momentum)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    nesterov: bool = False


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "architecture": "mlp", "arch_options": {"hidden": [1000, 1000]}, "num_classes": 10,
        "image_shape": [3, 32, 32],
        "normalize": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
        "epochs": 20, "batch_size": 20, "shuffle": False, "batchnorm": "frozen"}]})

    architecture: str = Field(..., description="mlp, convnet, resnet18, resnet50 or torchvision/<name>")
    arch_options: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(10, ge=2, le=100_000)
    image_shape: tuple[int, int, int] = (3, 32, 32)
    normalize: Normalize = Field(default_factory=Normalize)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(20, ge=1)
    shuffle: bool = False
    batchnorm: Literal["frozen", "train"] = Field(
        "frozen", description="frozen: BatchNorm in eval mode (running statistics stay at theta0's, "
        "the paper's protocol); train: batch statistics and running-statistics updates")
    clip_grad_norm: float | None = Field(
        None, gt=0, description="max global gradient norm used by the real training, if any")
    augment: bool = Field(False, description="random crop + flip in real training (pretraining only)")

    @field_validator("image_shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(d < 1 for d in v) or v[0] > 64 or v[1] > 1024 or v[2] > 1024:
            raise ValueError("image_shape must be [channels, height, width] with sensible sizes")
        return v

    @model_validator(mode="after")
    def _normalize_channels(self) -> "Recipe":
        c = self.image_shape[0]
        if len(self.normalize.mean) != c or len(self.normalize.std) != c:
            raise ValueError(f"normalize mean and std need {c} values, one per channel")
        return self

    def without_augmentation(self) -> "Recipe":
        return self.model_copy(update={"augment": False})


def parse_json_model(model: type[M], data: dict[str, Any] | str | bytes, what: str) -> M:
    """Validate a dict or JSON text into ``model``; raise ``RecipeError`` naming the field."""
    try:
        if isinstance(data, (str, bytes)):
            data = json.loads(data)
        return model.model_validate(data)
    except json.JSONDecodeError as err:
        raise RecipeError(f"{what} is not valid JSON: {err}") from None
    except ValidationError as err:
        raise RecipeError(f"invalid {what}: {format_validation_error(err)}") from None


def parse_recipe(data: dict[str, Any] | str | bytes) -> Recipe:
    return parse_json_model(Recipe, data, "recipe")


def load_recipe(path: str | Path) -> Recipe:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise RecipeError(f"cannot read recipe {path}: {err.strerror}") from None
    return parse_recipe(text)


def format_validation_error(err: ValidationError) -> str:
    """One line: ``field.path: message; other.field: message``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
