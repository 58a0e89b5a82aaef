"""Jobs: submit, list, read, follow (loss), download results, cancel, delete, score against
the true training images."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api import queue
from api.crud import audit
from api.crud.checkpoints import get_checkpoint
from api.crud.jobs import (create_job, delete_job, get_artifact, get_job, list_jobs, loss_points,
                           put_artifact, request_cancel)
from api.crud.pages import BadCursor
from api.db.models import Checkpoint, Job
from api.deps import KeyDep, SessionDep, SettingsDep, StoreDep
from api.limits import limit_violations
from api.schemas import (JobCreate, JobList, JobPublic, JobStatus, LossCurve, LossPointPublic,
                         LrCandidatePublic, Message, Metrics, Progress)
from api.storage import ObjectStore
from api.storage.base import job_key, job_prefix, load_stored_checkpoints, retrying
from api.uploads import receive_file
from core.checkpoints import check_pair
from core.evaluation import evaluate_npz_bytes

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
NOT_FOUND = {404: {"model": Message, "description": "no such job for this team"}}
PNG = {"content": {"image/png": {}}}


def to_public(job: Job) -> JobPublic:
    fraction = job.iteration / job.iterations if job.iterations else 0.0
    lr = [LrCandidatePublic(lr=c.lr, score=c.score, status=c.status) for c in job.lr_candidates]
    return JobPublic(
        id=job.id, name=job.name, status=job.status, phase=job.phase,
        progress=Progress(iteration=job.iteration, iterations=job.iterations,
                          fraction=round(fraction, 6), loss=job.loss, eta_seconds=job.eta_seconds),
        error=job.error, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, worker=job.worker, attempts=job.attempts,
        theta0=job.theta0_id, thetaf=job.thetaf_id, lr_search=lr or None, chosen_lr=job.chosen_lr,
        cancel_requested=job.cancel_requested, resumed_from=job.resumed_from, recipe=job.recipe,
        settings=job.settings, summary=job.summary)


def _job_or_404(session, key, job_id: str) -> Job:  # noqa: ANN001
    job = get_job(session, team_id=key.team_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, "job not found")
    return job


def _check_fit(store: ObjectStore, recipe, theta0: Checkpoint, thetaf: Checkpoint) -> None:  # noqa: ANN001
    check_pair(recipe, *load_stored_checkpoints(store, [theta0.storage_key, thetaf.storage_key]))


@router.post("", status_code=201, response_model=JobPublic,
             responses={422: {"model": Message, "description": "bad input, over a limit, or the "
                              "checkpoints do not fit the architecture"}})
async def submit_job(body: JobCreate, key: KeyDep, session: SessionDep, settings: SettingsDep,
                     store: StoreDep) -> JobPublic:
    """Queue a reconstruction of the images theta0 -> thetaf was trained on."""
    problems = limit_violations(body.recipe, body.settings, settings)
    if problems:
        raise HTTPException(422, "; ".join(problems))
    ckpts = {}
    for field in ("theta0", "thetaf"):
        ckpt = get_checkpoint(session, team_id=key.team_id, checkpoint_id=getattr(body, field))
        if ckpt is None:
            raise HTTPException(422, f"{field}: no checkpoint with id {getattr(body, field)!r}")
        ckpts[field] = ckpt
    await run_in_threadpool(_check_fit, store, body.recipe, ckpts["theta0"], ckpts["thetaf"])
    candidates = list(body.settings.lr_search.candidates) if body.settings.lr_search else []
    job = create_job(session, team_id=key.team_id, name=body.name, theta0_id=ckpts["theta0"].id,
                     thetaf_id=ckpts["thetaf"].id, recipe=body.recipe.model_dump(mode="json"),
                     settings=body.settings.model_dump(mode="json"), lr_candidates=candidates)
    audit.record(session, team_id=key.team_id, api_key_id=key.id, action="submit",
                 object_type="job", object_id=job.id,
                 detail={"theta0": job.theta0_id, "thetaf": job.thetaf_id, "name": job.name})
    session.commit()
    if candidates:
        await run_in_threadpool(queue.enqueue_lr_candidates, job.id, list(range(len(candidates))))
    else:
        await run_in_threadpool(queue.enqueue_run, job.id)
    session.refresh(job)
    return to_public(job)


@router.get("", response_model=JobList)
def list_team_jobs(key: KeyDep, session: SessionDep,
                   status: Annotated[JobStatus | None, Query()] = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50,
                   cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
                   ) -> JobList:
    """The team's jobs, newest first."""
    try:
        rows, next_cursor = list_jobs(session, team_id=key.team_id, status=status, limit=limit,
                                      cursor=cursor)
    except BadCursor:
        raise HTTPException(400, "invalid cursor") from None
    return JobList(data=[to_public(j) for j in rows], count=len(rows), next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
def read_job(job_id: str, key: KeyDep, session: SessionDep) -> JobPublic:
    return to_public(_job_or_404(session, key, job_id))


@router.get("/{job_id}/loss", response_model=LossCurve,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}})
def read_loss(job_id: str, key: KeyDep, session: SessionDep,
              format: Annotated[Literal["json", "csv"], Query()] = "json"):  # noqa: A002, ANN201
    """The loss curve so far (sampled every ``progress_every`` iterations)."""
    job = _job_or_404(session, key, job_id)
    points = [LossPointPublic(iteration=p.iteration, loss=p.loss, cosine=p.cosine, tv=p.tv)
              for p in loss_points(session, job_id=job.id)]
    if format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["iteration", "loss", "cosine", "tv"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(p.model_dump() for p in points)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{job.id}-loss.csv"'})
    return LossCurve(points=points)


def _download(session, key, store: ObjectStore, job_id: str, kind: str, filename: str) -> Response:  # noqa: ANN001
    job = _job_or_404(session, key, job_id)
    artifact = get_artifact(session, job_id=job.id, kind=kind)
    if artifact is None:
        raise HTTPException(404, f"{filename} is not available (job status: {job.status})")
    data = retrying(lambda: store.get_bytes(artifact.storage_key))
    audit.record(session, team_id=key.team_id, api_key_id=key.id, action="download",
                 object_type="job", object_id=job.id, detail={"file": filename})
    session.commit()
    return Response(data, media_type=artifact.content_type,
                    headers={"Content-Disposition": f'attachment; filename="{job.id}-{filename}"'})


@router.get("/{job_id}/grid.png", response_class=Response, responses={**NOT_FOUND, 200: PNG})
def download_grid(job_id: str, key: KeyDep, session: SessionDep, store: StoreDep) -> Response:
    return _download(session, key, store, job_id, "grid", "grid.png")


@router.get("/{job_id}/reconstruction.npz", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}})
def download_npz(job_id: str, key: KeyDep, session: SessionDep, store: StoreDep) -> Response:
    """``x`` uint8 NHWC, ``y``, ``mean``, ``std`` (and the ranking when computed)."""
    return _download(session, key, store, job_id, "reconstruction", "reconstruction.npz")


@router.get("/{job_id}/pairs.png", response_class=Response, responses={**NOT_FOUND, 200: PNG})
def download_pairs(job_id: str, key: KeyDep, session: SessionDep, store: StoreDep) -> Response:
    """Each reconstruction next to its matched true image (after ``POST .../truth``)."""
    return _download(session, key, store, job_id, "pairs", "pairs.png")


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses={**NOT_FOUND, 409: {"model": Message}})
def cancel_job(job_id: str, key: KeyDep, session: SessionDep) -> JobPublic:
    """A queued job stops at once; a running one at its next check (a few seconds)."""
    job = _job_or_404(session, key, job_id)
    if job.status in ("succeeded", "failed", "cancelled"):
        raise HTTPException(409, f"job already {job.status}")
    request_cancel(session, job=job)
    audit.record(session, team_id=key.team_id, api_key_id=key.id, action="cancel",
                 object_type="job", object_id=job.id)
    session.commit()
    return to_public(job)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def remove_job(job_id: str, key: KeyDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete the job, its loss curve and every stored object it made."""
    job = _job_or_404(session, key, job_id)
    prefix = job_prefix(job.team_id, job.id)
    delete_job(session, job=job)
    audit.record(session, team_id=key.team_id, api_key_id=key.id, action="delete",
                 object_type="job", object_id=job_id)
    session.commit()
    retrying(lambda: store.delete_prefix(prefix))
    return Response(status_code=204)


TRUTH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {
        "type": "string", "format": "binary",
        "description": "npz with x (uint8 NHWC) and y: the true training images"}}}}}}}


@router.post("/{job_id}/truth", response_model=Metrics, openapi_extra=TRUTH_BODY,
             responses={**NOT_FOUND, 409: {"model": Message}, 413: {"model": Message},
                        422: {"model": Message}})
async def score_with_truth(job_id: str, request: Request, key: KeyDep, session: SessionDep,
                           settings: SettingsDep, store: StoreDep) -> Metrics:
    """Audit scoring: match each true image to its best reconstruction (SSIM, PSNR)."""
    job = _job_or_404(session, key, job_id)
    artifact = get_artifact(session, job_id=job.id, kind="reconstruction")
    if job.status != "succeeded" or artifact is None:
        raise HTTPException(409, f"the job has no reconstruction to score (status: {job.status})")
    received = await receive_file(request, field="file", max_bytes=settings.max_upload_bytes)
    try:
        truth = received.path.read_bytes()
    finally:
        received.discard()
    recon = await run_in_threadpool(retrying, lambda: store.get_bytes(artifact.storage_key))
    metrics, pairs_png = await run_in_threadpool(evaluate_npz_bytes, recon, truth)
    metrics = json.loads(json.dumps(metrics, default=float))
    pairs_key = job_key(job.team_id, job.id, "pairs.png")
    await run_in_threadpool(retrying, lambda: store.put_bytes(pairs_key, pairs_png))
    put_artifact(session, job_id=job.id, kind="pairs", storage_key=pairs_key,
                 size_bytes=len(pairs_png), content_type="image/png")
    job.metrics = metrics
    audit.record(session, team_id=key.team_id, api_key_id=key.id, action="score",
                 object_type="job", object_id=job.id,
                 detail={"truth_sha256": received.sha256, "ssim_paper_mean": metrics.get("ssim_paper_mean")})
    session.commit()
    return Metrics(metrics=metrics)


@router.get("/{job_id}/metrics", response_model=Metrics, responses=NOT_FOUND)
def read_metrics(job_id: str, key: KeyDep, session: SessionDep) -> Metrics:
    job = _job_or_404(session, key, job_id)
    if job.metrics is None:
        raise HTTPException(404, "no metrics yet: POST the true images to /truth first")
    return Metrics(metrics=job.metrics)
