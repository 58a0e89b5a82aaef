"""Load a job's inputs: its row, recipe, settings and both checkpoints from storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from api.db.models import Checkpoint, Job
from api.db.session import session_scope, with_db_retry
from api.settings import Settings
from api.storage import get_store
from api.storage.base import load_stored_checkpoints
from core.recipe import Recipe, parse_recipe
from core.settings import ReconstructionSettings, parse_settings


@dataclass
class JobInputs:
    job_id: str
    team_id: str
    recipe: Recipe
    settings: ReconstructionSettings
    chosen_lr: float | None
    theta0: dict[str, Any]
    thetaf: dict[str, Any]


def load_inputs(job_id: str) -> JobInputs:
    def read() -> tuple[Job, Checkpoint, Checkpoint]:
        with session_scope() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            return (job, s.get(Checkpoint, job.theta0_id), s.get(Checkpoint, job.thetaf_id))
    job, c0, cf = with_db_retry(read)
    store = get_store()
    tensors = load_stored_checkpoints(store, [c0.storage_key, cf.storage_key])
    return JobInputs(job_id=job.id, team_id=job.team_id, recipe=parse_recipe(job.recipe),
                     settings=parse_settings(job.settings), chosen_lr=job.chosen_lr,
                     theta0=tensors[0], thetaf=tensors[1])


def device_for(settings: ReconstructionSettings, service: Settings):  # noqa: ANN201
    """The job's device, or the worker's (``SIMUDY_DEVICE``) when the job says auto. Touches
    CUDA only here, in the child process."""
    from core.device import resolve_device

    return resolve_device(settings.device if settings.device != "auto" else service.device)
