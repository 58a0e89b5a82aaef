"""Checkpoints: upload (stream a state dict to storage, inspect it safely, record it), list,
read, and delete one no job uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from api.crud import audit
from api.crud.checkpoints import (add_checkpoint, delete_checkpoint, find_by_hash, get_checkpoint,
                                  jobs_using, list_checkpoints)
from api.crud.pages import BadCursor
from api.db.models import Checkpoint, new_id
from api.deps import KeyDep, SessionDep, SettingsDep, StoreDep
from api.schemas import CheckpointList, CheckpointPublic, Message
from api.storage.base import checkpoint_key, retrying
from api.uploads import receive_file
from core.checkpoints import inspect_checkpoint

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])
NOT_FOUND = {404: {"model": Message, "description": "no such checkpoint for this team"}}

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": ".safetensors or .pt state dict"}}}}}}}


@router.post("", status_code=201, response_model=CheckpointPublic, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": CheckpointPublic, "description": "same bytes uploaded before"},
                        413: {"model": Message}, 422: {"model": Message}})
async def upload_checkpoint(request: Request, response: Response, key: KeyDep, session: SessionDep,
                            settings: SettingsDep, store: StoreDep) -> Checkpoint:
    """Upload theta0 or thetaf. Pickles are opened with ``weights_only`` (no code runs); the
    same bytes uploaded twice by one team give the same checkpoint."""
    received = await receive_file(request, field="file", max_bytes=settings.max_upload_bytes)
    try:
        info = await run_in_threadpool(inspect_checkpoint, received.path)
        existing = find_by_hash(session, team_id=key.team_id, sha256=received.sha256)
        if existing is not None:
            response.status_code = 200
            return existing
        ckpt_id = new_id()
        storage_key = checkpoint_key(key.team_id, ckpt_id)
        await run_in_threadpool(retrying, lambda: store.put_file(storage_key, received.path))
        ckpt = Checkpoint(id=ckpt_id, team_id=key.team_id, sha256=received.sha256,
                          size_bytes=received.size_bytes, format=info.format,
                          num_tensors=info.num_tensors, num_parameters=info.num_parameters,
                          filename=received.filename, storage_key=storage_key)
        try:
            add_checkpoint(session, checkpoint=ckpt)
            audit.record(session, team_id=key.team_id, api_key_id=key.id, action="upload",
                         object_type="checkpoint", object_id=ckpt_id,
                         detail={"sha256": received.sha256, "size_bytes": received.size_bytes,
                                 "filename": received.filename})
            session.commit()
        except IntegrityError:  # the same bytes arrived concurrently
            session.rollback()
            store.delete(storage_key)
            response.status_code = 200
            return find_by_hash(session, team_id=key.team_id, sha256=received.sha256)
        except BaseException:
            session.rollback()
            store.delete(storage_key)
            raise
        return ckpt
    finally:
        received.discard()


@router.get("", response_model=CheckpointList, responses={400: {"model": Message}})
def list_team_checkpoints(key: KeyDep, session: SessionDep,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50,
                          cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
                          ) -> CheckpointList:
    """The team's checkpoints, newest first."""
    try:
        rows, next_cursor = list_checkpoints(session, team_id=key.team_id, limit=limit, cursor=cursor)
    except BadCursor:
        raise HTTPException(400, "invalid cursor") from None
    return CheckpointList(data=[CheckpointPublic.model_validate(c) for c in rows], count=len(rows),
                          next_cursor=next_cursor)


def _checkpoint_or_404(session, key, checkpoint_id: str) -> Checkpoint:  # noqa: ANN001
    ckpt = get_checkpoint(session, team_id=key.team_id, checkpoint_id=checkpoint_id)
    if ckpt is None:
        raise HTTPException(404, "checkpoint not found")
    return ckpt


@router.get("/{checkpoint_id}", response_model=CheckpointPublic, responses=NOT_FOUND)
def read_checkpoint(checkpoint_id: str, key: KeyDep, session: SessionDep) -> Checkpoint:
    return _checkpoint_or_404(session, key, checkpoint_id)


def _in_use(count: int) -> HTTPException:
    return HTTPException(409, f"checkpoint is used by {count} job(s); delete those jobs first")


@router.delete("/{checkpoint_id}", status_code=204, response_class=Response,
               responses={**NOT_FOUND, 409: {"model": Message, "description": "jobs still use it"}})
def remove_checkpoint(checkpoint_id: str, key: KeyDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete the checkpoint and its stored bytes. Jobs keep their inputs: a checkpoint that a job
    names (as theta0 or thetaf) is refused with 409 until those jobs are deleted."""
    ckpt = _checkpoint_or_404(session, key, checkpoint_id)
    if count := jobs_using(session, checkpoint_id=ckpt.id):
        raise _in_use(count)
    storage_key = ckpt.storage_key
    try:
        delete_checkpoint(session, checkpoint=ckpt)
        audit.record(session, team_id=key.team_id, api_key_id=key.id, action="delete",
                     object_type="checkpoint", object_id=checkpoint_id, detail={"sha256": ckpt.sha256})
        session.commit()
    except IntegrityError:  # a job naming it was submitted meanwhile
        session.rollback()
        raise _in_use(jobs_using(session, checkpoint_id=checkpoint_id)) from None
    retrying(lambda: store.delete(storage_key))
    return Response(status_code=204)
