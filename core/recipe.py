"""The training recipe: how the audited model went from theta0 to thetaf.

One JSON schema shared by the CLI (``--recipe R.json``) and the API (``recipe`` field).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from core.errors import RecipeError
from core.lr_schedule import LRSchedule
from core.schema import AdamBetas, UserModel, parse_json_model

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
LEGACY_MODE = {"frozen": "eval", "train": "train"}  # the old ``batchnorm`` field's values


class Normalize(UserModel):
    mean: list[float] = Field(default_factory=lambda: list(CIFAR10_MEAN), max_length=64)
    std: list[float] = Field(default_factory=lambda: list(CIFAR10_STD), max_length=64)

    @field_validator("std")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(s <= 0 for s in v):
            raise ValueError("every std must be positive")
        return v


class Optimizer(UserModel):
    """The training's optimizer, as torch defines it. ``sgd``: ``torch.optim.SGD`` (momentum
    buffer starts at the first gradient; weight decay added to the gradient before momentum).
    ``adam``: ``torch.optim.Adam`` (weight decay added to the gradient); ``adamw``:
    ``torch.optim.AdamW`` (decoupled: the parameter shrinks by ``lr * weight_decay``)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, le=100)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd only")
    weight_decay: float | None = Field(
        None, ge=0, le=1, description="default: torch's, 0.01 for adamw and 0 otherwise")
    nesterov: bool = Field(False, description="sgd only")
    betas: AdamBetas = Field((0.9, 0.999), description="adam and adamw only")
    eps: float = Field(1e-8, gt=0, le=1, description="adam and adamw only")

    @model_validator(mode="after")
    def _fields_of_its_rule(self) -> "Optimizer":
        """A field the named rule does not read is an error, not silently ignored: a recipe
        saying adam with momentum 0.9 describes a training that never happened."""
        if self.name == "sgd" and (self.betas != (0.9, 0.999) or self.eps != 1e-8):
            raise ValueError("betas and eps are Adam's: sgd does not read them")
        if self.name != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(f"momentum and nesterov are SGD's: {self.name} has betas instead")
        if self.weight_decay is None:
            self.weight_decay = 0.01 if self.name == "adamw" else 0.0
        return self


class Recipe(UserModel):
    model_config = UserModel.model_config | {"json_schema_extra": {"examples": [{
        "architecture": "mlp", "arch_options": {"hidden": [1000, 1000]}, "num_classes": 10,
        "image_shape": [3, 32, 32],
        "normalize": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
        "epochs": 20, "batch_size": 20, "shuffle": False, "model_mode": "eval"}]}}

    architecture: str = Field(..., max_length=100,
                              description="mlp, convnet, resnet18, resnet50, vit or torchvision/<name>")
    arch_options: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(10, ge=2, le=100_000)
    image_shape: tuple[int, int, int] = (3, 32, 32)
    normalize: Normalize = Field(default_factory=Normalize)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    lr_schedule: LRSchedule | None = Field(
        None, description="how the lr changed during training (none: constant): step, "
        "multistep or cosine, per epoch or per step, with optional linear warmup "
        "(core/lr_schedule.py)")
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(20, ge=1, le=100_000)
    shuffle: bool = False
    model_mode: Literal["eval", "train"] = Field(
        "eval", description="the mode every layer trained in. eval: BatchNorm normalises with "
        "theta0's running statistics and never updates them, dropout is off (the paper's protocol); "
        "train: batch statistics, running statistics updated. Older recipes say batchnorm "
        "'frozen' (= eval) or 'train'.")
    loss: Literal["cross_entropy", "logistic"] = Field(
        "cross_entropy", description="cross_entropy: one output per class; logistic: a binary "
        "model with ONE output f and labels {0, 1}, loss log(1 + exp(-(2y - 1) f)) (num_classes 2)")
    clip_grad_norm: float | None = Field(
        None, gt=0, description="max global gradient norm used by the real training, if any")
    augment: bool = Field(False, description="random crop + flip in real training (pretraining only)")
    frozen: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=1000,
        description="parameters the training left alone (requires_grad False), by name or by a "
        "prefix of whole name components: 'features' freezes features.0.weight and the rest of "
        "the backbone, 'layers.0.weight' one tensor")

    @model_validator(mode="before")
    @classmethod
    def _legacy_batchnorm(cls, data: Any) -> Any:
        if isinstance(data, dict) and "batchnorm" in data:
            data = dict(data)
            legacy = data.pop("batchnorm")
            if "model_mode" in data:
                raise ValueError("give model_mode only (batchnorm is its old name)")
            if legacy not in LEGACY_MODE:
                raise ValueError("batchnorm (the old name of model_mode) must be 'frozen' or 'train'")
            data["model_mode"] = LEGACY_MODE[legacy]
        return data

    @field_validator("arch_options")
    @classmethod
    def _plain_json(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_plain_json(v, "arch_options")
        return v

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

    @model_validator(mode="after")
    def _logistic_is_binary(self) -> "Recipe":
        if self.loss == "logistic" and self.num_classes != 2:
            raise ValueError("loss logistic is binary: num_classes must be 2")
        return self

    @field_validator("frozen")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("frozen names a parameter twice")
        return v

    def is_frozen(self, name: str) -> bool:
        """Whether parameter ``name`` is frozen: an entry equal to it or to a prefix of its
        dot-separated components ('layers.0' freezes 'layers.0.weight', not 'layers.01.weight')."""
        return any(name == f or name.startswith(f + ".") for f in self.frozen)

    @property
    def num_outputs(self) -> int:
        """The width of the model's last layer: 1 for the logistic loss, else num_classes."""
        return 1 if self.loss == "logistic" else self.num_classes

    @property
    def trains_in_eval_mode(self) -> bool:
        return self.model_mode == "eval"

    def without_augmentation(self) -> "Recipe":
        return self.model_copy(update={"augment": False})


def check_plain_json(value: Any, where: str, *, depth: int = 0, budget: list[int] | None = None) -> None:
    """A small tree of JSON values: finite numbers, text without control characters, at most
    6 levels and 1,000 values (an option never needs more; a database cannot store NUL)."""
    budget = [1000] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > 6:
        raise ValueError(f"{where} is too large or too deeply nested")
    if isinstance(value, dict):
        for k, v in value.items():
            check_plain_json(k, where, depth=depth + 1, budget=budget)
            check_plain_json(v, f"{where}.{k}", depth=depth + 1, budget=budget)
    elif isinstance(value, list):
        for item in value:
            check_plain_json(item, where, depth=depth + 1, budget=budget)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} holds a number that is not finite")
    elif isinstance(value, str):
        if len(value) > 1000 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{where} holds text that is too long or has control characters")
    elif value is not None and not isinstance(value, (bool, int)):
        raise ValueError(f"{where} holds a {type(value).__name__}, not a JSON value")


def parse_recipe(data: dict[str, Any] | str | bytes) -> Recipe:
    return parse_json_model(Recipe, data, "recipe")


def load_recipe(path: str | Path) -> Recipe:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"cannot read recipe {path}: {getattr(err, 'strerror', None) or err}") from None
    return parse_recipe(text)
