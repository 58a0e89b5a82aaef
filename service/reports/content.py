"""What an audit report says, gathered once from the database and storage, so the HTML and the
PDF cannot disagree. Images and charts are bytes here; each renderer embeds them its own way."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Callable

from PIL import Image
from sqlalchemy.orm import Session

from service.crud.checkpoints import get_checkpoint
from service.crud.jobs import get_artifact, loss_points
from service.db.models import Job
from service.lifecycle import STOPPED
from service.provenance import simudy_version, source_commit
from service.reports import charts
from service.reports.finding import Finding, finding_for
from service.storage import ObjectStore
from service.storage.base import retrying

BEST_PAIRS_SHOWN = 10  # pairs in the report's table and image (best first)
PAIRS_PER_ROW = 10  # core.grids.pairs_grid_png's default columns
CHART_POINTS = 2000  # rows of loss.csv a chart draws at most


@dataclass
class Chart:
    title: str
    draw: Callable[[str], bytes]  # draw("svg") or draw("png"): each renderer asks for its format
    text: str  # the text alternative


@dataclass
class ReportContent:
    job_id: str
    job_name: str | None
    status: str
    created_at: datetime
    finished_at: datetime | None
    fingerprints: list[tuple[str, str, str]]  # (role, sha256, file name)
    recipe: dict[str, Any]
    method: str
    settings: dict[str, Any]
    run_facts: list[tuple[str, str]]  # (label, value): device, precision, run time, ...
    finding: Finding
    scores: list[tuple[str, str]]  # (label, value) of the scoring, when scored
    best_pairs: list[dict[str, Any]]
    pairs_png: bytes | None  # the best rows of pairs.png
    grid_png: bytes | None
    charts: list[Chart] = field(default_factory=list)
    version: str = ""
    commit: str = ""
    generated_at: datetime | None = None

    def recipe_json(self) -> str:
        return compact_json(self.recipe)

    def settings_json(self) -> str:
        return compact_json(self.settings)


def compact_json(data: dict[str, Any]) -> str:
    """One top-level key a line, each value on its line: short and still valid JSON."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}" for k, v in sorted(data.items())]
    return "{\n" + ",\n".join(lines) + "\n}"


def display_width(png: bytes, room: int = 720, most: int = 4) -> int:
    """Pixels to show a small image grid at: a whole multiple of its size (crisp pixels), at
    most ``most`` times and within ``room``."""
    width = Image.open(io.BytesIO(png)).width
    return width * max(1, min(most, room // max(width, 1)))


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 1:
        return "under 1 s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def _best_rows_of_pairs_png(png: bytes, num_pairs: int, rows: int) -> bytes:
    """The top ``rows`` rows of a pairs grid (its pairs are best first, ``PAIRS_PER_ROW`` a row)."""
    total_rows = max(1, math.ceil(num_pairs / PAIRS_PER_ROW))
    if total_rows <= rows:
        return png
    img = Image.open(io.BytesIO(png))
    cut = round(img.height * rows / total_rows)
    buf = io.BytesIO()
    img.crop((0, 0, img.width, cut)).save(buf, format="PNG")
    return buf.getvalue()


def _artifact_bytes(session: Session, store: ObjectStore, job: Job, kind: str) -> bytes | None:
    artifact = get_artifact(session, job_id=job.id, kind=kind)
    return retrying(lambda: store.get_bytes(artifact.storage_key)) if artifact else None


def metric_points(session: Session, store: ObjectStore, job: Job,
                  metric_names: list[str]) -> tuple[list[str], list[dict]]:
    """The job's metric rows, and every metric name they hold (method's first). A finished run's
    ``loss.csv`` has every step (a run shorter than ``progress_every`` has one sampled point
    only), thinned to at most ``CHART_POINTS`` rows (its last kept); before that, the points
    sampled every ``progress_every`` steps as it runs."""
    names = list(metric_names)
    raw = _artifact_bytes(session, store, job, "loss_csv")
    if raw:
        rows = list(csv.DictReader(io.StringIO(raw.decode())))
        names += [k for k in (rows[0] if rows else {}) if k != "iteration" and k not in names]
        stride = math.ceil(len(rows) / CHART_POINTS) or 1
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        return names, [{"iteration": int(r["iteration"]),
                        **{n: float(r[n]) if r.get(n) else None for n in names}} for r in rows]
    points = loss_points(session, job_id=job.id)
    for p in points:
        names += [k for k in p.values if k not in names]
    return names, [{"iteration": p.iteration, **{n: p.values.get(n) for n in names}} for p in points]


def gather(session: Session, store: ObjectStore, job: Job, metric_names: list[str],
           now: datetime) -> ReportContent:
    summary = job.summary or {}
    metrics = job.metrics
    fingerprints = []
    for role, ckpt_id in (("theta0 (before training)", job.theta0_id), ("thetaf (after training)", job.thetaf_id)):
        ckpt = get_checkpoint(session, team_id=job.team_id, checkpoint_id=ckpt_id) if ckpt_id else None
        if ckpt is not None:
            fingerprints.append((role, ckpt.sha256, ckpt.filename or ckpt.id))
    run_seconds = summary.get("elapsed_seconds")
    if run_seconds is None and job.started_at and job.finished_at:
        run_seconds = (job.finished_at - job.started_at).total_seconds()
    run_facts = [("device", str(summary.get("device", "unknown"))),
                 ("precision", str(summary.get("precision", job.settings.get("precision") or "default"))),
                 ("run time", _duration(run_seconds)),
                 ("iterations", f"{job.iteration} of {job.iterations}"),
                 ("worker", job.worker or "none"), ("attempts", str(job.attempts))]
    if job.chosen_lr is not None:
        run_facts.append(("training lr (searched)", f"{job.chosen_lr:g}"))

    names, points = metric_points(session, store, job, metric_names)
    chart_list = []
    if points or job.status not in STOPPED:  # a stopped job's empty chart says nothing
        chart_list.append(Chart("Loss curve", partial(charts.metric_curves, names, points),
                                charts.metric_curves_text(names, points)))
    lr = [{"lr": c.lr, "score": c.score} for c in job.lr_candidates]
    if lr:
        chart_list.append(Chart("Learning-rate search", partial(charts.lr_search, lr, job.chosen_lr),
                                charts.lr_search_text(lr, job.chosen_lr)))
    ranking = summary.get("ranking") or None
    if ranking and ranking.get("gradient_norms"):
        norms, significant = ranking["gradient_norms"], ranking["significant"]
        chart_list.append(Chart("Unknown-N ranking", partial(charts.ranking, norms, significant),
                                charts.ranking_text(norms, significant)))

    scores: list[tuple[str, str]] = []
    best: list[dict[str, Any]] = []
    pairs_png = None
    if metrics:
        for key, label in (("ssim_paper_mean", "mean SSIM (paper protocol)"), ("ssim_mean", "mean SSIM (standard)"),
                           ("psnr_mean", "mean PSNR (dB)")):
            if metrics.get(key) is not None:
                scores.append((label, f"{metrics[key]:.3f}"))
        for key, value in metrics.items():
            if key.startswith("recovered_above_"):
                scores.append((f"recovered above {key.removeprefix('recovered_above_')}",
                               f"{value} of {metrics.get('num_originals')}"))
        best = list(metrics.get("pairs") or [])[:BEST_PAIRS_SHOWN]
        raw = _artifact_bytes(session, store, job, "pairs")
        if raw:
            pairs_png = _best_rows_of_pairs_png(raw, len(metrics.get("pairs") or []), 1)
    return ReportContent(
        job_id=job.id, job_name=job.name, status=job.status, created_at=job.created_at,
        finished_at=job.finished_at, fingerprints=fingerprints, recipe=job.recipe,
        method=str(job.settings.get("method", "simudy")), settings=job.settings, run_facts=run_facts,
        finding=finding_for(status=job.status, metrics=metrics, summary=summary, error=job.error), scores=scores,
        best_pairs=best, pairs_png=pairs_png, grid_png=_artifact_bytes(session, store, job, "grid"),
        charts=chart_list, version=simudy_version(), commit=source_commit(), generated_at=now)
