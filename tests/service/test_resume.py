"""A worker killed with SIGKILL mid-job: the heartbeat sweep re-queues the job and the next
worker resumes it from the last saved state and finishes it once."""

from __future__ import annotations

import time

from sqlalchemy import select

from tests.service.helpers import final, submit, wait_job


def _row(job_id: str):  # noqa: ANN202
    from service.db.models import Job
    from service.db.session import session_scope

    with session_scope() as s:
        return s.scalar(select(Job).where(Job.id == job_id))


# long enough (seconds, on a fast CPU) that a job is still running when a test acts on it
ITERATIONS = 2000


def test_killed_worker_job_is_resumed_by_the_next(app_client, teams, workers):
    a = teams["a"]
    # saves often, and the job is long enough that it is still running when a state exists
    first = workers.start("doomed", SIMUDY_STATE_SAVE_SECONDS="0.2")
    job = submit(app_client, a, iterations=ITERATIONS)
    wait_job(app_client, a, job["id"], lambda j: j["status"] == "running" or final(j), 60)

    def state_saved() -> bool:
        row = _row(job["id"])
        return (row.state_iteration or 0) >= 10 or row.status != "running"

    from tests.service.conftest import wait_for
    wait_for(state_saved, 90, "a saved state")
    row = _row(job["id"])
    assert row.status == "running" and row.worker == "doomed@test"
    workers.kill(first)
    saved_at = _row(job["id"]).state_iteration

    workers.start("heir")
    done = wait_job(app_client, a, job["id"], final, timeout=180)
    assert done["status"] == "succeeded", done
    assert done["worker"] == "heir@test" and done["attempts"] == 2
    assert done["resumed_from"] is not None and done["resumed_from"] >= saved_at > 0
    points = app_client.get(f"/v1/jobs/{job['id']}/loss", headers=a).json()["points"]
    iterations = [p["iteration"] for p in points]
    assert iterations == list(range(5, ITERATIONS + 1, 5)), "every point exactly once"


def test_worker_shutdown_saves_state_and_gives_the_job_back(app_client, teams, workers):
    import os
    import signal

    a = teams["a"]
    workers.stop_all()  # no other worker may take the job back before we look
    leaving = workers.start("leaving")
    job = submit(app_client, a, iterations=ITERATIONS)
    wait_job(app_client, a, job["id"], lambda j: j["progress"]["iteration"] >= 10 or final(j), 60)
    os.kill(leaving.pid, signal.SIGTERM)  # warm shutdown of the worker (parent) only
    leaving.wait(timeout=60)
    row = _row(job["id"])
    assert row.status == "queued" and row.lease_token is None, (row.status, row.error)
    assert row.state_iteration and row.state_iteration >= 10

    workers.start("next")
    done = wait_job(app_client, a, job["id"], final, timeout=180)
    assert done["status"] == "succeeded" and done["worker"] == "next@test"
    assert done["resumed_from"] == row.state_iteration


def test_time_limit_fails_the_job_readably_and_keeps_its_state(app_client, teams, workers):
    a = teams["a"]
    workers.stop_all()  # only the worker with the short limit may take the job
    strict = workers.start("strict", SIMUDY_MAX_JOB_SECONDS="10")
    try:
        # the largest dummy set the test deployment allows: 16x the steps per iteration of the
        # default, so 5000 iterations outlast the 10 s limit however fast the engine gets
        job = submit(app_client, a, iterations=5000, num_images=64)
        done = wait_job(app_client, a, job["id"], final, timeout=120)
    finally:
        workers.stop(strict)
    assert done["status"] == "failed" and done["worker"] == "strict@test"
    assert "time limit of 10 s exceeded" in done["error"] and "state saved" in done["error"]
    assert 0 < done["progress"]["iteration"] < 5000
    row = _row(job["id"])
    assert row.state_iteration >= done["progress"]["iteration"]  # resumable from there


def _points(app_client, headers, job_id: str) -> list[int]:  # noqa: ANN001
    return [p["iteration"] for p in app_client.get(f"/v1/jobs/{job_id}/loss", headers=headers).json()["points"]]


def test_a_worker_killed_before_its_first_state_save_is_restarted_once(app_client, teams, workers):
    """No saved state: the next worker starts again from iteration 0 and owns the whole curve
    (the earlier points are replaced, not duplicated), whatever the state-save interval."""
    a = teams["a"]
    workers.stop_all()
    first = workers.start("no-save", SIMUDY_STATE_SAVE_SECONDS="3600")
    job = submit(app_client, a, iterations=ITERATIONS)
    wait_job(app_client, a, job["id"], lambda j: j["progress"]["iteration"] >= 20 or final(j), 90)
    assert _row(job["id"]).status == "running" and _row(job["id"]).state_iteration is None
    workers.kill(first)
    workers.start("restarter")
    done = wait_job(app_client, a, job["id"], final, timeout=240)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["resumed_from"] is None
    assert _points(app_client, a, job["id"]) == list(range(5, ITERATIONS + 1, 5)), \
        "every point exactly once"
    workers.stop_all()


def test_a_60_second_database_outage_mid_job_is_ridden_out(app_client, teams, workers, service_env):
    """The worker reaches Postgres through a proxy that drops every connection and refuses new
    ones for 60 s. The job still finishes exactly once, with every loss point once."""
    from urllib.parse import urlparse

    from tests.service.proxy import CuttableProxy

    a = teams["a"]
    workers.stop_all()
    db = urlparse(service_env["SIMUDY_DATABASE_URL"])
    proxy = CuttableProxy(db.hostname, db.port or 5432)
    try:
        workers.start("cut-off", SIMUDY_DATABASE_URL=db._replace(
            netloc=f"{db.username}@127.0.0.1:{proxy.port}").geturl())
        job = submit(app_client, a, iterations=300)
        wait_job(app_client, a, job["id"], lambda j: j["progress"]["iteration"] >= 20 or final(j), 90)
        proxy.cut()
        time.sleep(60)
        proxy.restore()
        done = wait_job(app_client, a, job["id"], final, timeout=300)
    finally:
        workers.stop_all()
        proxy.close()
    assert done["status"] == "succeeded", done
    assert _points(app_client, a, job["id"]) == list(range(5, 301, 5)), "every point exactly once"
    assert done["error"] is None


def test_a_worker_that_lost_its_lease_records_no_state(app_client, teams, workers):
    """The race behind a gap in the curve: a worker rides out an outage while the sweep
    re-queues its job; its next state save must neither record nor leave a state ahead of the
    points it could not write (the next attempt would resume past them)."""
    from core.pipeline import Pipeline
    from service import lifecycle
    from service.config import get_config
    from service.inputs import load_inputs
    from service.storage import get_store
    from service.storage.base import job_prefix
    from worker.run import JobMonitor, StopSignal

    a = teams["a"]
    workers.stop_all()  # the job is ours to drive in this process
    job = submit(app_client, a, iterations=300)
    config = get_config()
    lease = lifecycle.claim_run(job["id"], worker="stale@test", config=config)
    assert lease is not None
    inputs = load_inputs(job["id"])
    pipeline = Pipeline(inputs.method_inputs, inputs.settings, config.execution())
    pipeline.start(lr=inputs.chosen_lr, state=None, lr_scores=None)
    heartbeat = lifecycle.Heartbeat(lambda: True, 3600)
    monitor = JobMonitor(lease, pipeline, inputs.team_id, None, config, heartbeat, StopSignal())
    monitor.on_progress(pipeline.method.progress())  # a point still pending when the lease goes

    assert lifecycle.release(lease)  # what the sweep does to a job without a heartbeat
    monitor.save_state()
    assert heartbeat.lost.is_set()
    assert _row(job["id"]).state_iteration is None
    prefix = job_prefix(inputs.team_id, job["id"])
    assert not [k for k in get_store().list_keys(prefix) if k.rsplit("/", 1)[-1].startswith("state")]
    r = app_client.post(f"/v1/jobs/{job['id']}/cancel", headers=a)  # nothing left queued
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
