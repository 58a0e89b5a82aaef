"""One candidate of an lr search: a short run scored by the engine. The last candidate to
finish (decided atomically in the database) queues the winner's full run."""

from __future__ import annotations

import logging
import math
import time

from api.settings import Settings
from core.errors import SimudyError
from worker import leases
from worker.inputs import device_for, load_inputs

log = logging.getLogger(__name__)


def _cancel_check(job_id: str, settings: Settings):
    """A ``should_stop`` that asks the database at most every ``cancel_check_seconds``."""
    last = {"at": 0.0}

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["at"] < settings.cancel_check_seconds:
            return False
        last["at"] = now
        return leases.cancel_requested(job_id)

    return should_stop


def score_lr(job_id: str, index: int, *, settings: Settings) -> str:
    from core import lr_search

    if not leases.claim_candidate(job_id, index, settings=settings):
        return "not-claimed"
    hb = leases.Heartbeat(lambda: leases.beat_candidate(job_id, index), settings.heartbeat_seconds)
    hb.start()
    try:
        inputs = load_inputs(job_id)
        lr = lr_search.candidates(inputs.settings)[index]
        result = lr_search.score_candidate(inputs.theta0, inputs.thetaf, inputs.recipe,
                                           inputs.settings, lr,
                                           device=device_for(inputs.settings, settings),
                                           should_stop=_cancel_check(job_id, settings))
        score = float(result["score"]) if result is not None else math.nan
        if result is None:  # cancelled: close_lr_search below marks the job cancelled
            leases.candidate_done(job_id, index, score=None, error="cancelled")
        elif math.isfinite(score):
            leases.candidate_done(job_id, index, score=score, error=None)
        else:
            leases.candidate_done(job_id, index, score=None, error=f"lr {lr}: non-finite loss")
    except SimudyError as err:
        leases.candidate_done(job_id, index, score=None, error=str(err))
    finally:
        hb.stop()
    outcome = leases.close_lr_search(job_id)
    if outcome == "run":
        from api.queue import enqueue_run

        enqueue_run(job_id)
    return outcome or "scored"
