"""What this engine offers, read from its registries: methods, architectures and metrics, each
with the first paragraph of its docstring. Clients (and the coming dashboard) ask for this
instead of keeping their own lists, so registering an entry is all it takes to offer it."""

from __future__ import annotations

import inspect
from typing import Any


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def catalog() -> dict[str, list[dict[str, str]]]:
    from core.architectures import ARCHITECTURES
    from core.methods import METHODS, method_names
    from core.metrics import METRICS

    method_names()  # loads the built-in methods
    entries = {
        "methods": [{"name": n, "description": _summary(METHODS.get(n))} for n in METHODS.names()],
        "architectures": [{"name": n, "description": _summary(ARCHITECTURES.get(n))}
                          for n in ARCHITECTURES.names()],
        "metrics": [{"name": n, "description": _summary(METRICS.get(n))} for n in METRICS.names()],
    }
    entries["architectures"].append({
        "name": "torchvision/<name>",
        "description": "Any torchvision classification model, built with weights=None and its head "
                       "sized to num_classes; arch_options go to torchvision.models.get_model."})
    return entries
