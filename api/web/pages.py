"""The dashboard's pages. Each reads through the same team-scoped ``service.crud`` functions as
``/v1`` (another team's object is not found here either) and renders a template; what changes
data (uploads, submit, cancel, delete, scoring) is done by the page's script against ``/v1``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from api.deps import ConfigDep, read_db
from api.errors import validation_line
from api.schemas import AuditFilters
from api.web.forms import form_layout
from api.web.render import ViewerDep, page
from core.catalog import catalog
from core.job_settings import DEFAULT_METHOD
from core.recipe import Recipe
from service.crud.audit import AuditAction, list_events
from service.crud.checkpoints import get_checkpoint, jobs_using, list_checkpoints
from service.crud.jobs import get_artifact, get_job, has_loss_points, list_jobs
from service.crud.pages import BadCursor
from service.crud.teams import key_prefixes
from service.db.models import is_id
from service.lifecycle import JobStatus, is_final
from service.limits import published_maxima, publish_limits
from service.reports.finding import finding_for

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


def _not_found(request: Request, viewer, what: str) -> Response:  # noqa: ANN001
    return page(request, "not_found.html", viewer, status_code=404, what=what, title="Not found")


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/jobs")
def jobs_page(request: Request, viewer: ViewerDep,
              status: Annotated[str | None, Query(max_length=16)] = None,
              cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    with read_db() as session:
        statuses = [s.value for s in JobStatus]
        chosen = status if status in statuses else None
        try:
            rows, next_cursor = list_jobs(session, team_id=viewer.team_id, status=chosen, limit=PAGE_SIZE,
                                          cursor=cursor)
        except BadCursor:
            rows, next_cursor = [], None
        return page(request, "jobs.html", viewer, jobs=rows, statuses=statuses, status=chosen,
                    next_cursor=next_cursor, title="Jobs")


def _declared_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Each optional field's declared default, nested models included: what a user who leaves
    the field out gets (an AdamW weight decay left blank is torch's 0.01, not the 0.0 an SGD
    default instance would show once validated)."""
    out = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            continue
        value = field.get_default(call_default_factory=True)
        out[name] = _declared_defaults(type(value)) if isinstance(value, BaseModel) else value
    return out


def _recipe_defaults() -> dict[str, Any]:
    return json.loads(json.dumps(_declared_defaults(Recipe)))  # tuples as JSON lists


@router.get("/jobs/new")
def new_job_page(request: Request, viewer: ViewerDep, config: ConfigDep,
                 thetaf: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    with read_db() as session:
        checkpoints, _ = list_checkpoints(session, team_id=viewer.team_id, limit=200, cursor=None)
        offered = catalog()
        maxima = published_maxima(config)  # the form's bounds are this deployment's, as in /v1/catalog
        # the default method first: the form opens on it (the others follow in catalog order)
        methods = [{**m, "layout": form_layout(publish_limits(m["settings_schema"], maxima), m["defaults"],
                                               skip=("method",))}
                   for m in sorted(offered["methods"], key=lambda m: m["name"] != DEFAULT_METHOD)]
        recipe = form_layout(Recipe.model_json_schema(), _recipe_defaults())
        return page(request, "job_new.html", viewer, checkpoints=checkpoints, methods=methods,
                    recipe=recipe, architectures=offered["architectures"], chosen_thetaf=thetaf,
                    title="New audit")


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, viewer: ViewerDep) -> Response:
    with read_db() as session:
        job = get_job(session, team_id=viewer.team_id, job_id=job_id) if is_id(job_id) else None
        if job is None:
            return _not_found(request, viewer, "job")
        artifacts = {kind: get_artifact(session, job_id=job.id, kind=kind) is not None
                     for kind in ("grid", "preview", "pairs", "reconstruction", "loss_csv")}
        finding = finding_for(status=job.status, metrics=job.metrics, summary=job.summary, error=job.error)
        return page(request, "job.html", viewer, job=job, artifacts=artifacts, final=is_final(job.status),
                    finding=finding, ranking=(job.summary or {}).get("ranking"),
                    has_points=is_final(job.status) and has_loss_points(session, job_id=job.id),
                    title=job.name or f"Job {job.id[:8]}")


@router.get("/checkpoints")
def checkpoints_page(request: Request, viewer: ViewerDep, config: ConfigDep,
                     cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    with read_db() as session:
        try:
            rows, next_cursor = list_checkpoints(session, team_id=viewer.team_id, limit=PAGE_SIZE,
                                                 cursor=cursor)
        except BadCursor:
            rows, next_cursor = [], None
        return page(request, "checkpoints.html", viewer, checkpoints=rows, next_cursor=next_cursor,
                    max_upload_bytes=config.max_upload_bytes, title="Checkpoints")


@router.get("/checkpoints/{checkpoint_id}")
def checkpoint_page(request: Request, checkpoint_id: str, viewer: ViewerDep) -> Response:
    with read_db() as session:
        ckpt = get_checkpoint(session, team_id=viewer.team_id, checkpoint_id=checkpoint_id) \
            if is_id(checkpoint_id) else None
        if ckpt is None:
            return _not_found(request, viewer, "checkpoint")
        tensors = sorted((ckpt.manifest or {}).items())
        return page(request, "checkpoint.html", viewer, ckpt=ckpt, tensors=tensors,
                    used_by=jobs_using(session, checkpoint_id=ckpt.id), title=ckpt.filename or ckpt.id)


def _filters_from(request: Request) -> tuple[AuditFilters, str]:
    """The audit page's filters from its form (an empty field is no filter), and what is wrong
    with them ("" when nothing is; then no filter is applied and no event is shown)."""
    given = {name: value for name in AuditFilters.model_fields
             if (value := request.query_params.get(name, "").strip())}
    try:
        return AuditFilters.model_validate(given), ""
    except ValidationError as err:
        return AuditFilters(), validation_line(err)


@router.get("/audit")
def audit_page(request: Request, viewer: ViewerDep,
               before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    filters, problem = _filters_from(request)
    with read_db() as session:
        rows = [] if problem else list_events(session, team_id=viewer.team_id, limit=PAGE_SIZE + 1,
                                              before_id=before, **filters.model_dump())
        older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
        prefixes = key_prefixes(session, team_id=viewer.team_id)
        return page(request, "audit.html", viewer, status_code=422 if problem else 200,
                    events=rows[:PAGE_SIZE], filters=filters, query=filters.query_string(), problem=problem,
                    form={name: request.query_params.get(name, "") for name in AuditFilters.model_fields},
                    actions=[a.value for a in AuditAction], older=older, prefixes=prefixes, title="Audit trail")
