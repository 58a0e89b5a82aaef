"""Parsing JSON into the engine's pydantic models, with one readable line per error.

Every user-facing model (recipe, job settings, a method's options) goes through
``parse_json_model``, so the CLI and the API report a bad field the same way:
``invalid settings: iterations: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, GetCoreSchemaHandler, ValidationError
from pydantic_core import CoreSchema

from core.errors import RecipeError

M = TypeVar("M", bound=BaseModel)


def _adam_betas(v: tuple[float, float]) -> tuple[float, float]:
    if not all(0 <= b < 1 for b in v):
        raise ValueError("each Adam beta must be in [0, 1)")
    return v


# Adam's (beta1, beta2), each in [0, 1): the methods that optimise images with Adam share it
AdamBetas = Annotated[tuple[float, float], AfterValidator(_adam_betas)]


def format_validation_error(err: ValidationError) -> str:
    """One line: ``field.path: message; other.field: message``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN and Infinity (not JSON, and never a sensible setting)."""
    return json.loads(text, parse_constant=_reject_constant)


def parse_json_text(text: str | bytes, what: str) -> Any:
    """JSON text to Python data; ``RecipeError`` naming ``what`` when it is not JSON."""
    try:
        return loads_strict(text)
    except json.JSONDecodeError as err:
        raise RecipeError(f"{what} is not valid JSON: {err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RecipeError(f"{what} is not valid JSON: {err}") from None


def parse_json_model(model: type[M], data: dict[str, Any] | str | bytes, what: str) -> M:
    """Validate a dict or JSON text into ``model``; raise ``RecipeError`` naming the field."""
    if isinstance(data, (str, bytes)):
        data = parse_json_text(data, what)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RecipeError(f"invalid {what}: {format_validation_error(err)}") from None


def _strict_scalars(schema: Any) -> Any:
    """Mark every int, float and bool in a core schema strict, in place: lax mode takes JSON
    ``true`` for the integer 1 and ``1`` for true, so a typo would silently run the wrong job.
    Only these three: lists still fill tuples, and strict floats still take integers."""
    if isinstance(schema, dict):
        if schema.get("type") in ("int", "float", "bool"):
            schema["strict"] = True
        for value in schema.values():
            _strict_scalars(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict_scalars(value)
    return schema


class UserModel(BaseModel):
    """Base of every model a user writes: unknown fields are errors, numbers are finite, and
    a number is never a boolean nor a boolean a number (``_strict_scalars``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: type[BaseModel], handler: GetCoreSchemaHandler) -> CoreSchema:
        return _strict_scalars(handler(source))
