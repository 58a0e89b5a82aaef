"""One candidate of an lr search: the pipeline's short run scored by the engine. The last
candidate to finish (decided atomically in the database) queues the winner's full run."""

from __future__ import annotations

import logging
import math
import time

from core.errors import SimudyError
from core.pipeline import Pipeline
from service import lifecycle
from service.config import ServiceConfig
from service.inputs import load_inputs
from service.queue import enqueue_run

log = logging.getLogger(__name__)


def _cancel_check(job_id: str, config: ServiceConfig):  # noqa: ANN202
    """A ``should_stop`` that asks the database at most every ``cancel_check_seconds``."""
    last = {"at": 0.0}

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["at"] < config.cancel_check_seconds:
            return False
        last["at"] = now
        return lifecycle.cancel_requested(job_id)

    return should_stop


def score_lr(job_id: str, index: int, *, config: ServiceConfig) -> str:
    if not lifecycle.claim_candidate(job_id, index, config=config):
        return "not-claimed"
    heartbeat = lifecycle.Heartbeat(lambda: lifecycle.beat_candidate(job_id, index), config.heartbeat_seconds)
    heartbeat.start()
    try:
        inputs = load_inputs(job_id)
        pipeline = Pipeline(inputs.method_inputs, inputs.settings, config.execution())
        lr = pipeline.lr_candidates[index]
        result = pipeline.score_candidate(lr, should_stop=_cancel_check(job_id, config))
        if result is None:  # cancelled: close_lr_search below marks the job cancelled
            lifecycle.candidate_done(job_id, index, score=None, error="cancelled")
        elif math.isfinite(result["score"]):
            lifecycle.candidate_done(job_id, index, score=float(result["score"]), error=None)
        else:
            lifecycle.candidate_done(job_id, index, score=None, error=f"lr {lr}: non-finite loss")
    except SimudyError as err:
        lifecycle.candidate_done(job_id, index, score=None, error=str(err))
    finally:
        heartbeat.stop()
    outcome = lifecycle.close_lr_search(job_id)
    if outcome == "run":
        enqueue_run(job_id)
    return outcome or "scored"
