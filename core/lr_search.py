"""Unknown training learning rate (paper section 3): run each candidate for a few dozen image
updates from the same start (same seed, same dummy images) and keep the one with the lowest
loss. The pieces are separate so a service can run the candidates in parallel."""

from __future__ import annotations

from typing import Any

import torch

from core.methods import get_method
from core.recipe import Recipe
from core.settings import ReconstructionSettings

Tensors = dict[str, torch.Tensor]


def candidates(settings: ReconstructionSettings) -> list[float]:
    return list(settings.lr_search.candidates) if settings.lr_search else []


def with_lr(settings: ReconstructionSettings, lr: float) -> ReconstructionSettings:
    """The full run's settings once ``lr`` is chosen (search switched off, same seed)."""
    return settings.model_copy(update={"simulated_lr": lr, "lr_search": None})


def score_candidate(theta0: Tensors, thetaf: Tensors, recipe: Recipe,
                    settings: ReconstructionSettings, lr: float, *,
                    device: torch.device | None = None, on_progress=None,
                    should_stop=None) -> dict[str, Any] | None:
    """Run one candidate for ``lr_search.updates`` image updates; None if ``should_stop()``
    stopped it first."""
    search = settings.lr_search
    assert search is not None, "score_candidate needs settings.lr_search"
    trial = with_lr(settings, lr).model_copy(update={"iterations": search.updates})
    recon = get_method(settings.method)(theta0, thetaf, recipe, trial, device=device)
    if not recon.run(on_progress=on_progress, should_stop=should_stop):
        return None
    losses = [h["loss"] for h in recon.history_dicts()]
    window = losses[-search.score_window:]
    return {"lr": lr, "score": sum(window) / len(window), "losses": losses}


def pick_best(scores: list[dict[str, Any]]) -> float:
    return min(scores, key=lambda s: s["score"])["lr"]


def search(theta0: Tensors, thetaf: Tensors, recipe: Recipe, settings: ReconstructionSettings, *,
           device: torch.device | None = None, on_candidate=None) -> tuple[float, list[dict[str, Any]]]:
    """Score every candidate in turn; return (best lr, scores)."""
    scores = []
    for lr in candidates(settings):
        scores.append(score_candidate(theta0, thetaf, recipe, settings, lr, device=device))
        if on_candidate:
            on_candidate(scores[-1])
    return pick_best(scores), scores
