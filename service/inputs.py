"""Load a job's inputs for a worker: its row, recipe and settings, and the checkpoints from
storage, with the value checks the API cannot do without tensors (NaN/Inf, identical
theta0/thetaf, BatchNorm statistics changed under an eval-mode recipe)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core.checkpoints import check_pair
from core.job_settings import JobSettings
from core.methods import parse_settings
from core.methods.base import MethodInputs
from core.recipe import parse_recipe
from service.db.models import Checkpoint, Job
from service.db.session import session_scope, with_db_retry
from service.storage import get_store
from service.storage.base import load_stored_checkpoints


@dataclass
class JobInputs:
    job_id: str
    team_id: str
    settings: JobSettings
    chosen_lr: float | None
    state_iteration: int | None  # the saved state to resume from (None: start at iteration 0)
    method_inputs: MethodInputs


def load_inputs(job_id: str) -> JobInputs:
    """Everything a run needs; raises ``SimudyError`` (readable) when the values are unusable."""
    def read() -> tuple[Job, str | None, str]:
        with session_scope() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            c0 = s.get(Checkpoint, job.theta0_id) if job.theta0_id else None
            return job, c0.storage_key if c0 else None, s.get(Checkpoint, job.thetaf_id).storage_key
    job, key0, keyf = with_db_retry(read)
    recipe = parse_recipe(job.recipe)
    keys = {"theta0": key0, "thetaf": keyf} if key0 else {"thetaf": keyf}
    tensors = load_stored_checkpoints(get_store(), keys)
    theta0, thetaf = tensors.get("theta0"), tensors["thetaf"]
    check_pair(recipe, theta0, thetaf)
    return JobInputs(job_id=job.id, team_id=job.team_id, settings=parse_settings(job.settings),
                     chosen_lr=job.chosen_lr, state_iteration=job.state_iteration,
                     method_inputs=MethodInputs(recipe=recipe, thetaf=thetaf, theta0=theta0))
