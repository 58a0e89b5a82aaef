"""A worker killed with SIGKILL mid-job: the heartbeat sweep re-queues the job and the next
worker resumes it from the last saved state and finishes it once."""

from __future__ import annotations

from sqlalchemy import select

from tests.service.helpers import final, submit, wait_job


def _row(job_id: str):  # noqa: ANN202
    from api.db.models import Job
    from api.db.session import session_scope

    with session_scope() as s:
        return s.scalar(select(Job).where(Job.id == job_id))


def test_killed_worker_job_is_resumed_by_the_next(app_client, teams, workers):
    a = teams["a"]
    first = workers.start("doomed")
    job = submit(app_client, a, iterations=400)
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
    assert iterations == list(range(5, 401, 5)), "every point exactly once"


def test_worker_shutdown_saves_state_and_gives_the_job_back(app_client, teams, workers):
    import os
    import signal

    a = teams["a"]
    workers.stop_all()  # no other worker may take the job back before we look
    leaving = workers.start("leaving")
    job = submit(app_client, a, iterations=400)
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
        job = submit(app_client, a, iterations=5000)
        done = wait_job(app_client, a, job["id"], final, timeout=120)
    finally:
        workers.stop(strict)
    assert done["status"] == "failed" and done["worker"] == "strict@test"
    assert "time limit of 10 s exceeded" in done["error"] and "state saved" in done["error"]
    assert 0 < done["progress"]["iteration"] < 5000
    row = _row(job["id"])
    assert row.state_iteration >= done["progress"]["iteration"]  # resumable from there
