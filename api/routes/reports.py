"""A job's audit report (``report.html``, ``report.pdf``) and its live metric chart
(``loss.svg``, which the dashboard's job page shows as the run goes). The content and its
rendering are ``service.reports``; here only the team's job is looked up and the download is
recorded in the audit trail."""

from __future__ import annotations

from datetime import datetime, timezone

from typing import Callable

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.deps import Caller, CallerDep, StoreDep, db, read_db
from api.schemas import Message
from core.job_settings import DEFAULT_METHOD
from core.methods import METHODS
from service.crud import audit
from service.crud.jobs import get_job
from service.db.models import Job, is_id
from service.reports import charts
from service.reports.content import ReportContent, gather, metric_points
from service.reports.html import render_html
from service.reports.pdf import render_pdf
from service.storage import ObjectStore

router = APIRouter(prefix="/v1/jobs", tags=["reports"])
NOT_FOUND = {404: {"model": Message, "description": "no such job for this team"}}
# the report is a standalone page: it loads nothing and runs nothing
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


def method_metrics(job: Job) -> list[str]:
    method = job.settings.get("method", DEFAULT_METHOD)
    return list(METHODS.get(method).metric_names) if method in METHODS else ["loss"]


def _report(caller: Caller, job_id: str, store: ObjectStore, filename: str,
            render: Callable[[ReportContent], str | bytes]) -> tuple[str | bytes, str]:
    """(the rendered report, its job id), its download recorded; all in one thread."""
    with db() as s:
        job = get_job(s, team_id=caller.team_id, job_id=job_id) if is_id(job_id) else None
        if job is None:
            raise HTTPException(404, "job not found")
        content = gather(s, store, job, method_metrics(job), datetime.now(timezone.utc))
        audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="download",
                     object_type="job", object_id=job.id, detail={"file": filename})
    return render(content), job_id


@router.get("/{job_id}/report.html", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"text/html": {}}}})
def report_html(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """The one-page audit report: finding, scores, best pairs, model fingerprints, recipe,
    method, run, charts, provenance. Self-contained (images inlined)."""
    html, job_id = _report(caller, job_id, store, "report.html", render_html)
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": REPORT_CSP,
                             "Content-Disposition": f'inline; filename="{job_id}-report.html"'})


@router.get("/{job_id}/report.pdf", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"application/pdf": {}}}})
def report_pdf(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """The same report as a PDF."""
    pdf, job_id = _report(caller, job_id, store, "report.pdf", render_pdf)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{job_id}-report.pdf"'})


@router.get("/{job_id}/loss.svg", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"image/svg+xml": {}}}})
def loss_chart(job_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """The metric curves recorded so far, as an SVG chart (one panel per metric)."""
    with read_db() as s:
        job = get_job(s, team_id=caller.team_id, job_id=job_id) if is_id(job_id) else None
        if job is None:
            raise HTTPException(404, "job not found")
        names, points = metric_points(s, store, job, method_metrics(job))
    svg = charts.metric_curves(names, points, "svg")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
