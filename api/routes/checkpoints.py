"""``POST /v1/checkpoints``: stream a state dict to storage, inspect it safely, record it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from api.crud import audit
from api.crud.checkpoints import add_checkpoint, find_by_hash
from api.db.models import Checkpoint, new_id
from api.deps import KeyDep, SessionDep, SettingsDep, StoreDep
from api.schemas import CheckpointPublic, Message
from api.storage.base import checkpoint_key, retrying
from api.uploads import receive_file
from core.checkpoints import inspect_checkpoint

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])

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
