"""A job's stored files: each output file (``core.outputs.FILES``) and the scoring's pairs image
as an object in storage plus an artifact row naming it. One table says which file is which."""

from __future__ import annotations

from dataclasses import dataclass

from service.crud.jobs import put_artifact
from service.db.session import session_scope, with_db_retry
from service.storage import get_store
from service.storage.base import job_key, retrying


@dataclass(frozen=True)
class ArtifactKind:
    kind: str  # the artifact row's kind
    content_type: str


ARTIFACTS: dict[str, ArtifactKind] = {
    "reconstruction.npz": ArtifactKind("reconstruction", "application/octet-stream"),
    "grid.png": ArtifactKind("grid", "image/png"),
    "loss.csv": ArtifactKind("loss_csv", "text/csv"),
    "summary.json": ArtifactKind("summary", "application/json"),
    "pairs.png": ArtifactKind("pairs", "image/png"),
    "preview.png": ArtifactKind("preview", "image/png"),  # the images while the job runs
}


def state_file(iteration: int) -> str:
    """The run state saved at ``iteration`` (not an artifact: deleted when the job succeeds).
    Named by iteration so that only the state the job row records (written by the lease's
    owner) is ever resumed: a worker that lost its lease cannot replace it."""
    return f"state-{int(iteration)}.pt"


def store_file(*, team_id: str, job_id: str, name: str, data: bytes,
               db_retry_seconds: float | None = None) -> None:
    """Put ``data`` in storage under the job and record (or replace) its artifact row. A
    database outage is retried for ``db_retry_seconds`` (default: the configured budget; an
    HTTP request passes 0 and answers 503 instead)."""
    spec = ARTIFACTS[name]
    key = job_key(team_id, job_id, name)
    retrying(lambda: get_store().put_bytes(key, data))

    def go() -> None:
        with session_scope() as s:
            put_artifact(s, job_id=job_id, kind=spec.kind, storage_key=key, size_bytes=len(data),
                         content_type=spec.content_type)
    with_db_retry(go, seconds=db_retry_seconds)
