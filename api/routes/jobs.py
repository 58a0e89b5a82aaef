"""Jobs: submit, list, read, follow (metric points), download results, cancel, delete, score
against the true training images."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.cache import TTLCache
from api.deps import Caller, CallerDep, ConfigDep, StoreDep, db, read_db
from api.schemas import (JobCreate, JobList, JobPublic, LossCurve, LrCandidatePublic, Message,
                         MetricPoint, Metrics, ProgressPublic)
from api.uploads import ReceivedFile, receive_file
from core.checkpoints import Manifest, check_manifest
from core.errors import CheckpointError
from core.evaluation import evaluate_npz_bytes
from core.job_settings import DEFAULT_METHOD
from core.methods import METHODS, get_method
from core.outputs import jsonable
from service import lifecycle, queue
from service.crud import audit
from service.crud.checkpoints import get_checkpoint
from service.config import ServiceConfig
from service.crud.jobs import delete_job, get_artifact, get_job, get_job_by_id, list_jobs, loss_points
from service.crud.pages import BadCursor
from service.db.models import Checkpoint, Job, is_id
from service.lifecycle import JobStatus
from service.limits import limit_violations
from service.results import ARTIFACTS, store_file
from service.storage import ObjectStore
from service.storage.base import job_prefix, retrying

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
job_status: TTLCache[bytes] = TTLCache()  # the JSON of the job's public view
NOT_FOUND = {404: {"model": Message, "description": "no such job for this team"}}
PNG = {"content": {"image/png": {}}}


def to_public(job: Job) -> JobPublic:
    fraction = job.iteration / job.iterations if job.iterations else 0.0
    lr = [LrCandidatePublic(lr=c.lr, score=c.score, status=c.status) for c in job.lr_candidates]
    return JobPublic(
        id=job.id, name=job.name, status=job.status, phase=job.phase,
        progress=ProgressPublic(iteration=job.iteration, iterations=job.iterations,
                                fraction=round(fraction, 6), loss=job.loss, eta_seconds=job.eta_seconds),
        error=job.error, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, worker=job.worker, attempts=job.attempts,
        theta0=job.theta0_id, thetaf=job.thetaf_id, lr_search=lr or None, chosen_lr=job.chosen_lr,
        cancel_requested=job.cancel_requested, resumed_from=job.resumed_from, recipe=job.recipe,
        settings=job.settings, summary=job.summary)


def _job_or_404(session, caller: Caller, job_id: str) -> Job:  # noqa: ANN001
    job = get_job(session, team_id=caller.team_id, job_id=job_id) if is_id(job_id) else None
    if job is None:
        raise HTTPException(404, "job not found")
    return job


def _check_fit(recipe, field: str, ckpt: Checkpoint) -> None:  # noqa: ANN001
    """The checkpoint's recorded manifest fits the recipe's model (built on the meta device)."""
    if ckpt.manifest is None:
        raise CheckpointError(f"{field}: checkpoint {ckpt.id} was uploaded before manifests were "
                              "recorded; upload the same file again to record it")
    check_manifest(recipe, Manifest.from_json(ckpt.format, ckpt.manifest).tensors, field)


def _create(body: JobCreate, caller: Caller, config: ServiceConfig) -> tuple[JobPublic, list[float]]:
    """Check the job against the limits and its checkpoints, and record it (one thread)."""
    job_settings = body.settings
    method = get_method(job_settings.method)
    problems = (limit_violations(body.recipe, job_settings, config)
                + method.setting_problems(body.recipe, job_settings))
    if problems:
        raise HTTPException(422, "; ".join(problems))
    if method.needs_theta0 and body.theta0 is None:
        raise HTTPException(422, f"theta0: method {method.name} needs theta0 (the weights before training)")
    with db() as s:
        ckpts: dict[str, Checkpoint] = {}
        for field in ("theta0", "thetaf"):
            ckpt_id = getattr(body, field)
            if ckpt_id is None:
                continue
            ckpt = get_checkpoint(s, team_id=caller.team_id, checkpoint_id=ckpt_id) if is_id(ckpt_id) else None
            if ckpt is None:
                raise HTTPException(422, f"{field}: no checkpoint with id {ckpt_id!r}")
            _check_fit(body.recipe, field, ckpt)
            ckpts[field] = ckpt
        if "theta0" in ckpts and ckpts["theta0"].sha256 == ckpts["thetaf"].sha256:
            raise HTTPException(422, "theta0 and thetaf are the same checkpoint (identical parameters: "
                                     "nothing was trained)")
        candidates = list(job_settings.lr_search.candidates) if job_settings.lr_search else []
        job = lifecycle.create(s, team_id=caller.team_id, name=body.name,
                               theta0_id=ckpts["theta0"].id if "theta0" in ckpts else None,
                               thetaf_id=ckpts["thetaf"].id, recipe=body.recipe.model_dump(mode="json"),
                               settings=job_settings.model_dump(mode="json"), lr_candidates=candidates)
        audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="submit",
                     object_type="job", object_id=job.id,
                     detail={"theta0": job.theta0_id, "thetaf": job.thetaf_id, "name": job.name,
                             "method": job_settings.method})
        s.flush()
        return to_public(job), candidates


def _enqueue(job_id: str, candidates: list[float]) -> JobPublic:
    if candidates:
        queue.enqueue_lr_candidates(job_id, list(range(len(candidates))))
    else:
        queue.enqueue_run(job_id)
    with db() as s:
        return to_public(get_job_by_id(s, job_id=job_id))


@router.post("", status_code=201, response_model=JobPublic,
             responses={422: {"model": Message, "description": "bad input, over a limit, or the "
                              "checkpoints do not fit the architecture"}})
def submit_job(body: JobCreate, caller: CallerDep, config: ConfigDep) -> JobPublic:
    """Queue a reconstruction of the images theta0 -> thetaf was trained on."""
    job, candidates = _create(body, caller, config)
    return _enqueue(job.id, candidates)


@router.get("", response_model=JobList, responses={400: {"model": Message}})
def list_team_jobs(caller: CallerDep,
                   status: Annotated[JobStatus | None, Query()] = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50,
                   cursor: Annotated[str | None, Query(max_length=200,
                                                       description="next_cursor of the previous page")] = None,
                   ) -> JobList:
    """The team's jobs, newest first."""
    with db() as s:
        try:
            rows, next_cursor = list_jobs(s, team_id=caller.team_id,
                                          status=status.value if status else None, limit=limit, cursor=cursor)
        except BadCursor:
            raise HTTPException(400, "invalid cursor") from None
        return JobList(data=[to_public(j) for j in rows], count=len(rows), next_cursor=next_cursor)


def _read_public_json(caller: Caller, job_id: str) -> bytes:
    with read_db() as s:
        return to_public(_job_or_404(s, caller, job_id)).model_dump_json().encode()


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def read_job(job_id: str, caller: CallerDep, config: ConfigDep) -> Response:
    """The job's status and progress (polls of one job share one read, serialised once, for a
    fraction of a second: ``SIMUDY_STATUS_CACHE_SECONDS``)."""
    body = await job_status.get((caller.team_id, job_id),
                                lambda: run_in_threadpool(_read_public_json, caller, job_id),
                                config.status_cache_seconds)
    return Response(body, media_type="application/json")


@router.get("/{job_id}/loss", response_model=LossCurve,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}})
def read_loss(job_id: str, caller: CallerDep,
              format: Annotated[Literal["json", "csv"], Query()] = "json"):  # noqa: A002, ANN201
    """The metrics so far, sampled every ``progress_every`` iterations (the finished job's
    ``loss.csv`` holds every iteration)."""
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        points = loss_points(s, job_id=job.id)
        names = _metric_names(job, points)
        rows = [{"iteration": p.iteration, **{n: p.values.get(n) for n in names}} for p in points]
    if format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["iteration", *names], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{job_id}-loss-sampled.csv"'})
    return LossCurve(metrics=names, points=[MetricPoint(**r) for r in rows])


def _metric_names(job: Job, points: list) -> list[str]:
    """The method's metric names in its order, then any other name the points hold."""
    method = job.settings.get("method", DEFAULT_METHOD)
    names = list(METHODS.get(method).metric_names) if method in METHODS else []
    for p in points:
        names += [k for k in p.values if k not in names]
    return names


def _download(caller: Caller, store: ObjectStore, job_id: str, filename: str) -> Response:
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        artifact = get_artifact(s, job_id=job.id, kind=ARTIFACTS[filename].kind)
        if artifact is None:
            raise HTTPException(404, f"{filename} is not available (job status: {job.status})")
        storage_key, content_type = artifact.storage_key, artifact.content_type
        audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="download",
                     object_type="job", object_id=job.id, detail={"file": filename})
    data = retrying(lambda: store.get_bytes(storage_key))
    return Response(data, media_type=content_type,
                    headers={"Content-Disposition": f'attachment; filename="{job_id}-{filename}"'})


@router.get("/{job_id}/grid.png", response_class=Response, responses={**NOT_FOUND, 200: PNG})
def download_grid(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    return _download(caller, store, job_id, "grid.png")


@router.get("/{job_id}/reconstruction.npz", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}})
def download_npz(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """``x`` uint8 NHWC, ``y``, ``mean``, ``std``, ``x_normalized`` (and the ranking when computed)."""
    return _download(caller, store, job_id, "reconstruction.npz")


@router.get("/{job_id}/loss.csv", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}})
def download_loss_csv(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """Every iteration's metrics of a finished job (the file ``simudy reconstruct`` writes)."""
    return _download(caller, store, job_id, "loss.csv")


@router.get("/{job_id}/summary.json", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"application/json": {}}}})
def download_summary(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """The finished job's summary (the file ``simudy reconstruct`` writes)."""
    return _download(caller, store, job_id, "summary.json")


@router.get("/{job_id}/preview.png", response_class=Response, responses={**NOT_FOUND, 200: PNG})
def download_preview(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """The images as they are now, stored by the worker every ``SIMUDY_PREVIEW_SECONDS`` while
    the job runs (unranked). A live view, so it is not recorded as a download."""
    with read_db() as s:
        job = _job_or_404(s, caller, job_id)
        artifact = get_artifact(s, job_id=job.id, kind=ARTIFACTS["preview.png"].kind)
        if artifact is None:
            raise HTTPException(404, f"no preview yet (job status: {job.status})")
        storage_key = artifact.storage_key
    data = retrying(lambda: store.get_bytes(storage_key))
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/{job_id}/pairs.png", response_class=Response, responses={**NOT_FOUND, 200: PNG})
def download_pairs(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """Each reconstruction next to its matched true image (after ``POST .../truth``)."""
    return _download(caller, store, job_id, "pairs.png")


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses={**NOT_FOUND, 409: {"model": Message}})
def cancel_job(job_id: str, caller: CallerDep) -> JobPublic:
    """A queued job stops at once; a running one at its next check (a few seconds)."""
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        if lifecycle.is_final(job.status):
            raise HTTPException(409, f"job already {job.status}")
        lifecycle.request_cancel(s, job=job)
        audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="cancel",
                     object_type="job", object_id=job.id)
        job_status.drop((caller.team_id, job_id))
        return to_public(job)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def remove_job(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """Delete the job, its metric points and every stored object it made."""
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        prefix = job_prefix(job.team_id, job.id)
        delete_job(s, job=job)
        audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="delete",
                     object_type="job", object_id=job_id)
        job_status.drop((caller.team_id, job_id))
    retrying(lambda: store.delete_prefix(prefix))
    return Response(status_code=204)


TRUTH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {
        "type": "string", "format": "binary",
        "description": "npz with x (uint8 NHWC) and y: the true training images"}}}}}}}


def _scorable(caller: Caller, job_id: str) -> tuple[str, str]:
    """(team id, the stored reconstruction's key) of a job that can be scored."""
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        artifact = get_artifact(s, job_id=job.id, kind=ARTIFACTS["reconstruction.npz"].kind)
        if job.status != JobStatus.SUCCEEDED.value or artifact is None:
            raise HTTPException(409, f"the job has no reconstruction to score (status: {job.status})")
        return job.team_id, artifact.storage_key


def _score(caller: Caller, job_id: str, received: ReceivedFile, store: ObjectStore,
           config: ServiceConfig) -> dict:
    team_id, recon_key = _scorable(caller, job_id)
    truth = received.path.read_bytes()
    recon = retrying(lambda: store.get_bytes(recon_key))
    metrics, pairs_png = evaluate_npz_bytes(recon, truth, max_work=config.max_scoring_pixel_pairs)
    metrics = jsonable(metrics)
    store_file(team_id=team_id, job_id=job_id, name="pairs.png", data=pairs_png, db_retry_seconds=0)
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        job.metrics = metrics
        audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="score",
                     object_type="job", object_id=job.id,
                     detail={"truth_sha256": received.sha256, "ssim_paper_mean": metrics.get("ssim_paper_mean")})
    return metrics


@router.post("/{job_id}/truth", response_model=Metrics, openapi_extra=TRUTH_BODY,
             responses={**NOT_FOUND, 408: {"model": Message}, 409: {"model": Message},
                        413: {"model": Message}, 415: {"model": Message}, 422: {"model": Message}})
async def score_with_truth(job_id: str, request: Request, caller: CallerDep, config: ConfigDep,
                           store: StoreDep) -> Metrics:
    """Audit scoring: match each true image to its best reconstruction (SSIM, PSNR)."""
    await run_in_threadpool(_scorable, caller, job_id)  # 404/409 before the upload is read
    received = await receive_file(request, field="file", max_bytes=config.max_truth_bytes,
                                  idle_seconds=config.upload_idle_seconds)
    try:
        metrics = await run_in_threadpool(_score, caller, job_id, received, store, config)
    finally:
        received.discard()
    return Metrics(metrics=metrics)


@router.get("/{job_id}/metrics", response_model=Metrics, responses=NOT_FOUND)
def read_metrics(job_id: str, caller: CallerDep) -> Metrics:
    with db() as s:
        job = _job_or_404(s, caller, job_id)
        if job.metrics is None:
            raise HTTPException(404, "no metrics yet: POST the true images to /truth first")
        return Metrics(metrics=job.metrics)
