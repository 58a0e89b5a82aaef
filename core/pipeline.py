"""The whole reconstruction as one call: optional lr search, the run, the artifacts.
Used by ``simudy reconstruct`` and the benchmarks; the service runs the same pieces as
separate tasks."""

from __future__ import annotations

from typing import Any, Callable

import torch

from core import lr_search
from core.device import resolve_device
from core.methods import get_method
from core.outputs import ReconstructionOutputs, finalize
from core.recipe import Recipe
from core.settings import ReconstructionSettings

Tensors = dict[str, torch.Tensor]


def reconstruct(theta0: Tensors, thetaf: Tensors, recipe: Recipe, settings: ReconstructionSettings, *,
                on_progress: Callable | None = None, on_candidate: Callable | None = None,
                should_stop: Callable[[], bool] | None = None,
                state: dict[str, Any] | None = None) -> tuple[Any, ReconstructionOutputs | None]:
    """Returns (the method object, its outputs); outputs is None when stopped early, and the
    method object's ``state_dict()`` then resumes the run."""
    device = resolve_device(settings.device)
    scores = None
    if settings.lr_search and state is None:
        best, scores = lr_search.search(theta0, thetaf, recipe, settings, device=device,
                                        on_candidate=on_candidate)
        settings = lr_search.with_lr(settings, best)
    recon = get_method(settings.method)(theta0, thetaf, recipe, settings, device=device)
    if state is not None:
        recon.load_state_dict(state)
    if not recon.run(on_progress=on_progress, should_stop=should_stop):
        return recon, None
    return recon, finalize(recon, lr_search=scores)
