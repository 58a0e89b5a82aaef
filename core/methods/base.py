"""The shape of every reconstruction method.

A method is a class registered in ``core.methods.METHODS`` that follows ``Method``: built from
the inputs (recipe, thetaf, and theta0 when it needs it), its settings (the shared
``JobSettings`` fields plus its own ``Options``) and an ``Execution``; it runs, reports
``Progress`` with its own named metrics, stops when asked, shows its current images cheaply
(``preview_images``), hands out its whole state and resumes from it exactly, and produces a
``MethodResult``. Everything around it (lr search, the
CLI, the service, outputs) works through this interface only.

``IterativeMethod`` is the shared loop: a subclass gives one optimisation step returning its
metrics as device scalars, and the loop syncs them to the host only every
``progress_every`` steps (and before its state is read), so a GPU is never stalled per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from core.errors import RecipeError, ReconstructionFailed
from core.execution import Execution
from core.job_settings import JobSettings
from core.recipe import Recipe
from core.schema import UserModel
from core.types import StopCheck, Tensors

STATE_FORMAT = 2


@dataclass
class MethodInputs:
    """What the audited team gives: the recipe and the checkpoints (theta0 may be absent for
    methods that reconstruct from thetaf alone)."""

    recipe: Recipe
    thetaf: Tensors
    theta0: Tensors | None = None


@dataclass
class Progress:
    iteration: int
    iterations: int
    metrics: dict[str, float]
    elapsed_seconds: float
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        return self.iteration / self.iterations

    @property
    def loss(self) -> float:
        return self.metrics.get("loss", math.nan)


ProgressCallback = Callable[[Progress], None]


@dataclass
class MethodResult:
    """``images`` in [0, 1] (N,C,H,W) on the CPU; ``normalized`` the raw optimised tensor in the
    model's input space; ``history`` one row per step (``iteration`` and the metrics);
    ``summary`` the method's own JSON-able facts; ``arrays`` extra arrays for
    reconstruction.npz; ``captions`` one short text per image for the grid."""

    images: torch.Tensor
    normalized: torch.Tensor
    labels: torch.Tensor
    history: list[dict[str, float]]
    iterations: int
    elapsed_seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    captions: list[str] | None = None


@dataclass(frozen=True)
class Cost:
    """What a job will cost, known before it runs (the service's limits use it):
    ``unrolled_steps`` is the depth of the graph differentiated per step (memory), and
    ``sample_passes`` the forward+backward passes over one image per step (time)."""

    unrolled_steps: int
    sample_passes: int


@runtime_checkable
class Method(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type[UserModel]]
    needs_theta0: ClassVar[bool]
    lr_option: ClassVar[str | None]  # the option an lr search sets; None: no lr search
    default_iterations: ClassVar[int]
    metric_names: ClassVar[tuple[str, ...]]  # progress metrics, "loss" (minimised) first

    iteration: int
    settings: JobSettings  # the settings it runs with (an lr search's winner set in)
    device: torch.device
    precision: str  # the precision it runs at: the job's request or the executor's default

    def __init__(self, inputs: MethodInputs, settings: JobSettings, execution: Execution) -> None: ...

    def run(self, *, on_progress: ProgressCallback | None = None,
            should_stop: StopCheck | None = None, until: int | None = None) -> bool: ...

    def progress(self) -> Progress: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def result(self) -> MethodResult: ...

    def preview_images(self) -> torch.Tensor:
        """The images as they are now, (N,C,H,W) in [0, 1] on the CPU: cheap (no ranking, no
        extra passes), for a live view while the method runs."""
        ...

    @classmethod
    def estimate_cost(cls, recipe: Recipe, settings: JobSettings) -> Cost: ...

    @classmethod
    def trial_settings(cls, full: JobSettings, trial: JobSettings, recipe: Recipe) -> JobSettings: ...

    @classmethod
    def setting_problems(cls, recipe: Recipe, settings: JobSettings) -> list[str]:
        """What in the settings cannot work with this recipe, one readable line each, found
        before any weights are read (the API answers them with a 422)."""
        ...


def balanced_labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """n // C of every class (the remainder to the first classes), shuffled once."""
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=generator)]


def to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


class IterativeMethod:
    """The run loop, progress, history and the common part of the state.

    Subclasses set the class attributes of ``Method`` and implement ``step() -> Tensor`` (the
    step's metrics, in ``metric_names`` order, as one device tensor: no host sync),
    ``method_state()`` / ``load_method_state()`` and ``result()``."""

    metric_names: ClassVar[tuple[str, ...]] = ("loss",)

    @classmethod
    def trial_settings(cls, full: JobSettings, trial: JobSettings, recipe: Any) -> JobSettings:
        """A short lr-search trial's settings (``trial``: ``full`` cut to fewer updates), fixed
        where a default depends on the run's length, so the trial's updates are the full run's
        first ones. Default: unchanged."""
        return trial

    @classmethod
    def setting_problems(cls, recipe: Any, settings: JobSettings) -> list[str]:
        """Settings that cannot work with the recipe (see ``Method``). Default: none."""
        return []

    def __init__(self, settings: JobSettings, execution: Execution) -> None:
        self.settings = settings
        self.execution = execution
        self.device = execution.torch_device()
        self.precision = execution.precision_for(settings.precision)
        self.iteration = 0
        self.elapsed = 0.0
        self.history: list[tuple[float, ...]] = []  # (iteration, *metrics) per step, on the host
        self._pending: list[tuple[int, torch.Tensor]] = []  # steps not yet synced to the host

    # -- to implement --------------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        raise NotImplementedError

    def method_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_method_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the loop -----------------------------------------------------------------------------
    @property
    def iterations(self) -> int:
        return self.settings.iterations

    @property
    def finished(self) -> bool:
        return self.iteration >= self.iterations

    def run(self, *, on_progress: ProgressCallback | None = None,
            should_stop: StopCheck | None = None, until: int | None = None) -> bool:
        """Run to ``until`` (default: all iterations). Returns True when there, False when
        ``should_stop()`` asked to stop (the state is consistent: call ``state_dict``)."""
        target = min(until or self.iterations, self.iterations)
        every = self.settings.progress_every
        started, base = time.perf_counter(), self.elapsed
        try:
            while self.iteration < target:
                if should_stop is not None and should_stop():
                    return False
                metrics = self.step()
                self.iteration += 1
                self._pending.append((self.iteration, metrics.detach()))
                if self.iteration % every == 0 or self.iteration == target:
                    self.sync()  # the host sync point: metrics to the host, finiteness checked
                    self.elapsed = base + time.perf_counter() - started
                    if on_progress is not None:
                        on_progress(self.progress())
        except torch.cuda.OutOfMemoryError:
            raise ReconstructionFailed(self.out_of_memory_advice()) from None
        finally:
            self.sync()
            self.elapsed = base + time.perf_counter() - started
        return True

    def sync(self) -> None:
        """Move the pending steps' metrics to the host (one transfer) and check them."""
        if not self._pending:
            return
        iterations = [i for i, _ in self._pending]
        values = torch.stack([m.float() for _, m in self._pending]).cpu().tolist()
        self._pending.clear()
        for it, row in zip(iterations, values):
            if not all(math.isfinite(v) for v in row):
                raise ReconstructionFailed(
                    f"the loss became non-finite at iteration {it}: {self.non_finite_advice()}")
            self.history.append((it, *row))

    def out_of_memory_advice(self) -> str:
        return f"out of GPU memory with {self.settings.num_images} images: lower num_images"

    def non_finite_advice(self) -> str:
        return "lower the learning rate of the optimisation"

    def progress(self) -> Progress:
        self.sync()
        it, total = self.iteration, self.iterations
        last = self.history[-1][1:] if self.history else (math.nan,) * len(self.metric_names)
        eta = (self.elapsed / it) * (total - it) if it else None
        return Progress(it, total, dict(zip(self.metric_names, last)), self.elapsed, eta)

    def history_rows(self) -> list[dict[str, float]]:
        self.sync()
        names = ("iteration", *self.metric_names)
        return [dict(zip(names, (int(row[0]), *row[1:]))) for row in self.history]

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly; loadable with ``torch.load(weights_only=True)``."""
        self.sync()
        return {
            "format": STATE_FORMAT,
            "method": type(self).name,  # type: ignore[attr-defined]
            "settings": self.settings.model_dump_json(),
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(
                -1, 1 + len(self.metric_names)),
            "rng": torch.get_rng_state(),
            **self.method_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT or state.get("method") != type(self).name:  # type: ignore[attr-defined]
            raise RecipeError(f"the saved state is not a {type(self).name} state of this version")  # type: ignore[attr-defined]
        self.load_method_state(state)
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self.history = [tuple([int(r[0]), *r[1:]]) for r in state["history"].tolist()]
        self._pending.clear()
        torch.set_rng_state(state["rng"])
