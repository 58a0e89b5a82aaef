"""What this engine offers, read from its registries: methods (with each one's settings JSON
schema and defaults, so a client can draw a form), architectures, metrics and pairings, each
with the first paragraph of its docstring. Clients (and the dashboard) ask for this instead of
keeping their own lists, so registering an entry is all it takes to offer it."""

from __future__ import annotations

from typing import Any

from core.architectures import ARCHITECTURES
from core.methods import method_catalog
from core.metrics import METRICS, PAIRING_METRIC, PAIRINGS
from core.registry import summary


def catalog() -> dict[str, Any]:
    architectures = [{"name": n, "description": summary(ARCHITECTURES.get(n))} for n in ARCHITECTURES.names()]
    architectures.append({
        "name": "torchvision/<name>",
        "description": "Any torchvision classification model, built with weights=None and its head "
                       "sized to num_classes; arch_options go to torchvision.models.get_model."})
    return {
        "methods": method_catalog(),
        "architectures": architectures,
        "metrics": [{"name": n, "description": METRICS.get(n).description} for n in METRICS.names()],
        "pairings": [{"name": n, "description": summary(PAIRINGS.get(n))} for n in PAIRINGS.names()],
        "pairing_metric": PAIRING_METRIC,
    }
