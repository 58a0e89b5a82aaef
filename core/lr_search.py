"""Unknown training learning rate (paper section 3): run each candidate for a few dozen
updates from the same start (same seed, same initial images) and keep the one with the lowest
loss. The pieces are separate so a service can run the candidates in parallel; ``best_index``
is the one rule that picks the winner, wherever the scores were gathered."""

from __future__ import annotations

from typing import Any

from core.job_settings import JobSettings
from core.methods import get_method


def candidates(settings: JobSettings) -> list[float]:
    return list(settings.lr_search.candidates) if settings.lr_search else []


def with_lr(settings: JobSettings, lr: float) -> JobSettings:
    """The full run's settings once ``lr`` is chosen (search switched off, same seed)."""
    option = get_method(settings.method).lr_option
    if option is None:
        raise ValueError(f"method {settings.method} has no lr to set")
    return settings.model_copy(update={option: lr, "lr_search": None})


def trial_settings(settings: JobSettings, lr: float) -> JobSettings:
    """One candidate's short run: the full run's settings, cut to ``lr_search.updates``."""
    assert settings.lr_search is not None, "trial_settings needs settings.lr_search"
    return with_lr(settings, lr).model_copy(update={"iterations": settings.lr_search.updates})


def score_of(settings: JobSettings, lr: float, losses: list[float]) -> dict[str, Any]:
    """A candidate's score: the mean loss of the last ``score_window`` updates."""
    assert settings.lr_search is not None
    window = losses[-settings.lr_search.score_window:]
    return {"lr": lr, "score": sum(window) / len(window), "losses": losses}


def best_index(scores: list[float | None]) -> int | None:
    """The winner: the lowest score, the earliest candidate on a tie; None if none scored."""
    scored = [(s, i) for i, s in enumerate(scores) if s is not None]
    return min(scored)[1] if scored else None
