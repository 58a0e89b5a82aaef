"""One reconstruction from inputs to files, the same sequence wherever it runs.

``simudy reconstruct`` and the service's worker drive this object: an optional lr search
(here in turn, or one candidate per worker task), ``start`` (build the method with the chosen
lr and resume from saved state), ``run`` under a ``Monitor`` (progress, stop requests; the
worker's monitor also saves state), ``state_bytes`` when stopped, ``finalize`` for the files.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from core import lr_search
from core.errors import RecipeError
from core.execution import Execution
from core.job_settings import JobSettings
from core.methods import get_method
from core.methods.base import Method, MethodInputs, Progress
from core.outputs import ReconstructionOutputs, package
from core.state_io import state_from_bytes, state_to_bytes

PIPELINE_STATE_FORMAT = 1


class Monitor(Protocol):
    """What watches a run: it sees progress every ``progress_every`` steps and is asked
    between steps whether to stop."""

    def on_progress(self, progress: Progress) -> None: ...

    def should_stop(self) -> bool: ...


class Pipeline:
    def __init__(self, inputs: MethodInputs, settings: JobSettings, execution: Execution) -> None:
        self.method_cls = self.check(inputs, settings)
        self.inputs, self.settings, self.execution = inputs, settings, execution
        self.lr: float | None = None  # the lr chosen by a search
        self.lr_scores: list[dict[str, Any]] | None = None
        self.method: Method | None = None

    @staticmethod
    def check(inputs: MethodInputs, settings: JobSettings) -> type[Method]:
        """The inputs suit the method (before anything runs); returns the method's class."""
        method_cls = get_method(settings.method)
        if method_cls.needs_theta0 and inputs.theta0 is None:
            raise RecipeError(f"method {settings.method} needs theta0 (the weights before training)")
        return method_cls

    # -- unknown lr ----------------------------------------------------------------------------
    @property
    def lr_candidates(self) -> list[float]:
        return lr_search.candidates(self.settings)

    def score_candidate(self, lr: float, *, should_stop: Callable[[], bool] | None = None
                        ) -> dict[str, Any] | None:
        """Run one candidate's short run; its score, or None if ``should_stop()`` stopped it."""
        settings = self.method_cls.trial_settings(self.settings, lr_search.trial_settings(self.settings, lr),
                                                  self.inputs.recipe)
        trial = self.method_cls(self.inputs, settings, self.execution)
        if not trial.run(should_stop=should_stop):
            return None
        return lr_search.score_of(self.settings, lr, [row["loss"] for row in trial.history_rows()])

    def search_lr(self, *, on_candidate: Callable[[dict[str, Any]], None] | None = None) -> float:
        """Score every candidate in turn; remember the scores; return the best lr."""
        scores = []
        for lr in self.lr_candidates:
            score = self.score_candidate(lr)
            assert score is not None
            scores.append(score)
            if on_candidate:
                on_candidate(score)
        self.lr_scores = scores
        best = lr_search.best_index([s["score"] for s in scores])
        assert best is not None
        return scores[best]["lr"]

    # -- the run -------------------------------------------------------------------------------
    def start(self, *, lr: float | None = None, state: bytes | None = None,
              lr_scores: list[dict[str, Any]] | None = None) -> Method:
        """Build the method (with the chosen ``lr`` when searched) and resume from ``state``
        (which remembers the chosen lr and the search's scores)."""
        saved = state_from_bytes(state) if state is not None else None
        if saved is not None:
            if saved.get("pipeline") != PIPELINE_STATE_FORMAT:
                raise RecipeError("the saved state is not a reconstruction state of this version")
            lr = saved.get("lr") if lr is None else lr
            lr_scores = lr_scores or saved.get("lr_scores")
        self.lr, self.lr_scores = lr, lr_scores or self.lr_scores
        settings = lr_search.with_lr(self.settings, lr) if lr is not None else self.settings
        method = self.method_cls(self.inputs, settings, self.execution)
        if saved is not None:
            method.load_state_dict(saved["method"])
        self.method = method
        return method

    def run(self, monitor: Monitor | None = None) -> bool:
        """Run to the end (True) or until the monitor asks to stop (False)."""
        method = self._started()
        if monitor is None:
            return method.run()
        return method.run(on_progress=monitor.on_progress, should_stop=monitor.should_stop)

    def state_bytes(self) -> bytes:
        """Everything to resume exactly (``start(state=...)``); never unpickled with code."""
        return state_to_bytes({"pipeline": PIPELINE_STATE_FORMAT, "method": self._started().state_dict(),
                               "lr": self.lr, "lr_scores": self.lr_scores})

    def finalize(self) -> ReconstructionOutputs:
        method = self._started()
        return package(method.result(), recipe=self.inputs.recipe, settings=method.settings,
                       metric_names=self.method_cls.metric_names, device=str(method.device),
                       precision=method.precision, lr_search=self.lr_scores)

    def _started(self) -> Method:
        if self.method is None:
            raise RuntimeError("call start() first")
        return self.method
