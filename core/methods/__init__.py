"""Reconstruction methods by name, and the settings model of each.

Registering a class that follows ``core.methods.base.Method`` is all it takes to offer a
method: the CLI's ``--method``, the service's ``settings.method``, ``/v1/catalog`` (with the
method's JSON schema and defaults), the lr search and the outputs all read this registry.
A job's settings are validated by ``settings_model(name)``: the shared ``JobSettings`` fields
plus the method's ``Options``, one flat object. Methods outside this package register by
being imported (``load_method_modules``; the service reads ``SIMUDY_METHOD_MODULES``).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from core.errors import RecipeError
from core.job_settings import DEFAULT_METHOD, JobSettings
from core.methods.base import Method
from core.registry import Registry
from core.schema import parse_json_model, parse_json_text

METHODS: Registry[type[Method]] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: ``@register`` on a ``Method`` adds it under ``cls.name``."""
    for attr in ("name", "Options", "needs_theta0", "lr_option", "default_iterations", "metric_names"):
        if not hasattr(cls, attr):
            raise TypeError(f"method {cls.__name__} lacks the class attribute {attr!r}")
    clash = set(cls.Options.model_fields) & set(JobSettings.model_fields)
    if clash:
        raise TypeError(f"method {cls.name}: options {sorted(clash)} clash with the shared settings")
    if cls.metric_names[:1] != ("loss",):
        raise TypeError(f"method {cls.name}: the first metric must be 'loss'")
    METHODS.register(cls.name)(cls)
    settings_model.cache_clear()
    return cls


def get_method(name: str) -> type[Method]:
    try:
        return METHODS.get(name)
    except KeyError as err:
        raise RecipeError(str(err.args[0])) from None


def method_names() -> list[str]:
    return METHODS.names()


def load_method_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import modules that register more methods (plugins)."""
    for name in modules:
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise RecipeError(f"cannot import method module {name!r}: {err}") from None


@lru_cache(maxsize=None)
def settings_model(name: str) -> type[JobSettings]:
    """The flat settings model of method ``name``: shared fields + its options."""
    cls = get_method(name)

    def _lr_search_allowed(self: JobSettings) -> JobSettings:
        if self.lr_search is not None and cls.lr_option is None:
            raise ValueError(f"method {cls.name} has no training lr to search: remove lr_search")
        return self

    return create_model(  # type: ignore[call-overload]
        f"{cls.__name__}Settings",
        __base__=(cls.Options, JobSettings),  # shared fields first in the schema
        __doc__=f"Settings of a {cls.name} job: the shared fields and the method's options.",
        __validators__={"_lr_search_allowed": model_validator(mode="after")(_lr_search_allowed)},
        method=(Literal[name], Field(name, description="reconstruction method")),  # type: ignore[valid-type]
        iterations=(int, Field(cls.default_iterations, ge=1, le=100_000_000,
                               description="optimisation steps")),
    )


def parse_settings(data: dict[str, Any] | str | bytes) -> JobSettings:
    """Validate job settings (a dict or JSON text) with the chosen method's settings model."""
    if isinstance(data, (str, bytes)):
        data = parse_json_text(data, "settings")
    if not isinstance(data, dict):
        raise RecipeError("invalid settings: expected a JSON object")
    name = data.get("method", DEFAULT_METHOD)
    if not isinstance(name, str) or name not in METHODS:
        raise RecipeError(f"invalid settings: method: unknown method {name!r} "
                          f"(known: {', '.join(method_names())})")
    return parse_json_model(settings_model(name), data, "settings")


def method_catalog() -> list[dict[str, Any]]:
    """Each method with its one-line description, what it needs, and its settings' JSON
    schema and defaults (so a client can draw a form)."""
    from core.registry import summary

    entries = []
    for name in method_names():
        cls = get_method(name)
        model = settings_model(name)
        defaults = {k: f.get_default(call_default_factory=True) for k, f in model.model_fields.items()
                    if not f.is_required()}
        entries.append({
            "name": name, "description": summary(cls), "needs_theta0": cls.needs_theta0,
            "searches_lr": cls.lr_option is not None, "metrics": list(cls.metric_names),
            "settings_schema": model.model_json_schema(),
            "defaults": _jsonable(defaults),
        })
    return entries


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


from core.methods import kkt, ntk, simudy  # noqa: E402,F401  (registers the built-in methods)
