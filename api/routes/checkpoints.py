"""Checkpoints: upload (stream a state dict to storage, read its manifest safely, record it),
list, read, and delete one no job uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from api.deps import Caller, CallerDep, ConfigDep, StoreDep, db
from api.schemas import CheckpointList, CheckpointPublic, Message
from api.uploads import ReceivedFile, receive_file
from core.checkpoints import Manifest, read_upload

from service.crud import audit
from service.crud.checkpoints import (add_checkpoint, delete_checkpoint, find_by_hash, get_checkpoint,
                                     jobs_using, list_checkpoints)
from service.crud.pages import BadCursor
from service.db.models import Checkpoint, is_id, new_id
from service.storage import ObjectStore
from service.storage.base import checkpoint_key, retrying

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])
NOT_FOUND = {404: {"model": Message, "description": "no such checkpoint for this team"}}

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": ".safetensors or .pt state dict"}}}}}}}


def _record_upload(caller: Caller, received: ReceivedFile, info: Manifest, store: ObjectStore
                   ) -> tuple[CheckpointPublic, bool]:
    """Store the upload and record it, in one thread; (the checkpoint, whether it is new)."""
    with db() as s:
        existing = find_by_hash(s, team_id=caller.team_id, sha256=received.sha256)
        if existing is not None:
            if existing.manifest is None:  # uploaded before manifests were recorded
                existing.manifest = info.to_json()
            return CheckpointPublic.model_validate(existing), False
    ckpt_id = new_id()
    storage_key = checkpoint_key(caller.team_id, ckpt_id)
    retrying(lambda: store.put_file(storage_key, received.path))
    try:
        with db() as s:
            ckpt = add_checkpoint(s, checkpoint=Checkpoint(
                id=ckpt_id, team_id=caller.team_id, sha256=received.sha256,
                size_bytes=received.size_bytes, format=info.format, num_tensors=info.num_tensors,
                num_parameters=info.num_parameters, filename=received.filename,
                storage_key=storage_key, manifest=info.to_json()))
            audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="upload",
                         object_type="checkpoint", object_id=ckpt_id,
                         detail={"sha256": received.sha256, "size_bytes": received.size_bytes,
                                 "filename": received.filename})
            s.flush()
            return CheckpointPublic.model_validate(ckpt), True
    except IntegrityError:  # the same bytes arrived concurrently
        store.delete(storage_key)
        with db() as s:
            return CheckpointPublic.model_validate(
                find_by_hash(s, team_id=caller.team_id, sha256=received.sha256)), False
    except BaseException:
        store.delete(storage_key)
        raise


@router.post("", status_code=201, response_model=CheckpointPublic, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": CheckpointPublic, "description": "same bytes uploaded before"},
                        408: {"model": Message}, 413: {"model": Message}, 415: {"model": Message},
                        422: {"model": Message}})
async def upload_checkpoint(request: Request, response: Response, caller: CallerDep,
                            config: ConfigDep, store: StoreDep) -> CheckpointPublic:
    """Upload theta0 or thetaf. The tensors' names, shapes and dtypes are recorded (pickles are
    opened with ``weights_only``, so no code runs), and weights that are NaN or Inf, or a file
    without floating-point tensors, are refused with 422. The same bytes uploaded twice by one
    team give the same checkpoint."""
    received = await receive_file(request, field="file", max_bytes=config.max_upload_bytes,
                                  idle_seconds=config.upload_idle_seconds)
    try:
        info = await run_in_threadpool(read_upload, received.path, received.display_name)
        ckpt, created = await run_in_threadpool(_record_upload, caller, received, info, store)
    finally:
        received.discard()
    response.status_code = 201 if created else 200
    return ckpt


@router.get("", response_model=CheckpointList, responses={400: {"model": Message}})
def list_team_checkpoints(caller: CallerDep,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50,
                          cursor: Annotated[str | None, Query(max_length=200,
                                                              description="next_cursor of the previous page")] = None,
                          ) -> CheckpointList:
    """The team's checkpoints, newest first."""
    with db() as s:
        try:
            rows, next_cursor = list_checkpoints(s, team_id=caller.team_id, limit=limit, cursor=cursor)
        except BadCursor:
            raise HTTPException(400, "invalid cursor") from None
        return CheckpointList(data=[CheckpointPublic.model_validate(c) for c in rows], count=len(rows),
                              next_cursor=next_cursor)


def _checkpoint_or_404(session, caller: Caller, checkpoint_id: str) -> Checkpoint:  # noqa: ANN001
    ckpt = get_checkpoint(session, team_id=caller.team_id, checkpoint_id=checkpoint_id) \
        if is_id(checkpoint_id) else None
    if ckpt is None:
        raise HTTPException(404, "checkpoint not found")
    return ckpt


@router.get("/{checkpoint_id}", response_model=CheckpointPublic, responses=NOT_FOUND)
def read_checkpoint(checkpoint_id: str, caller: CallerDep) -> CheckpointPublic:
    with db() as s:
        return CheckpointPublic.model_validate(_checkpoint_or_404(s, caller, checkpoint_id))


def _in_use(count: int) -> HTTPException:
    return HTTPException(409, f"checkpoint is used by {count} job(s); delete those jobs first")


@router.delete("/{checkpoint_id}", status_code=204, response_class=Response,
               responses={**NOT_FOUND, 409: {"model": Message, "description": "jobs still use it"}})
def remove_checkpoint(checkpoint_id: str, caller: CallerDep, store: StoreDep) -> Response:
    """Delete the checkpoint and its stored bytes. Jobs keep their inputs: a checkpoint that a job
    names (as theta0 or thetaf) is refused with 409 until those jobs are deleted."""
    try:
        with db() as s:
            ckpt = _checkpoint_or_404(s, caller, checkpoint_id)
            if count := jobs_using(s, checkpoint_id=ckpt.id):
                raise _in_use(count)
            storage_key = ckpt.storage_key
            delete_checkpoint(s, checkpoint=ckpt)
            audit.record(s, team_id=caller.team_id, api_key_id=caller.key_id, action="delete",
                         object_type="checkpoint", object_id=checkpoint_id, detail={"sha256": ckpt.sha256})
    except IntegrityError:  # a job naming it was submitted meanwhile
        with db() as s:
            raise _in_use(jobs_using(s, checkpoint_id=checkpoint_id)) from None
    retrying(lambda: store.delete(storage_key))
    return Response(status_code=204)
