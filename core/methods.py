"""Reconstruction methods by name. A method is a class constructed as
``Method(theta0, thetaf, recipe, settings, model=..., device=...)`` with ``run``, ``state_dict``,
``load_state_dict`` and ``result`` (see ``core.simudy.SimuDy``). Baselines (Loo et al.,
Buzaglo et al.) register here too."""

from __future__ import annotations

from typing import Any

from core.registry import Registry

METHODS: Registry[Any] = Registry("method")


def _load_builtin() -> None:
    import core.simudy  # noqa: F401  (registers "simudy")


def get_method(name: str) -> Any:
    _load_builtin()
    return METHODS.get(name)


def method_names() -> list[str]:
    _load_builtin()
    return METHODS.names()
