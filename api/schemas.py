"""Request and response bodies (schema families: ``JobCreate`` in, ``JobPublic`` out).

A job's ``settings`` are validated by the chosen method's settings model (``core.methods``),
looked up when the request arrives, so a method registered by a plugin is accepted like a
built-in one; the OpenAPI document shows one schema per registered method."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import (BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler,
                      ValidationInfo, field_validator)
from pydantic_core import PydanticCustomError, core_schema

from core.errors import RecipeError
from core.job_settings import JobSettings
from core.methods import method_names, parse_settings, settings_model
from core.recipe import Recipe
from service.crud.audit import AuditAction
from service.db.models import ID_PATTERN
from service.lifecycle import JobStatus, Phase

RECIPE_EXAMPLE = {"architecture": "mlp", "arch_options": {"hidden": [256]}, "num_classes": 10,
                  "image_shape": [3, 32, 32], "optimizer": {"name": "sgd", "lr": 0.01},
                  "epochs": 2, "batch_size": 4}
SETTINGS_EXAMPLE = {"method": "simudy", "num_images": 8, "iterations": 200, "image_lr": 0.01,
                    "seed": 0, "progress_every": 10}


class _JobSettingsType:
    """Validates a settings object with its method's model at request time."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any) -> JobSettings:
            if isinstance(value, JobSettings):
                return value
            try:
                return parse_settings(value)
            except RecipeError as err:
                raise PydanticCustomError("settings", str(err).removeprefix("invalid settings: ")) from None

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.model_dump(mode="json")))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"oneOf": [handler(settings_model(name).__pydantic_core_schema__)
                          for name in method_names()],
                "description": "the shared fields and the chosen method's options "
                               "(GET /v1/catalog lists each method's schema and defaults)"}


class Message(BaseModel):
    detail: str = Field(examples=["job not found"])


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "5f0c8e3b9d2a4f6e8a1b2c3d4e5f6a7b", "sha256": "9f86d0...", "size_bytes": 104857,
        "format": "safetensors", "num_tensors": 4, "num_parameters": 789258,
        "filename": "thetaf.safetensors", "created_at": "2025-01-01T00:00:00Z"}]})
    id: str
    sha256: str
    size_bytes: int
    format: Literal["safetensors", "pytorch"]
    num_tensors: int
    num_parameters: int
    filename: str | None = None
    created_at: datetime


class CheckpointList(BaseModel):
    data: list[CheckpointPublic]
    count: int
    next_cursor: str | None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "theta0": "5f0c8e3b9d2a4f6e8a1b2c3d4e5f6a7b", "thetaf": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "recipe": RECIPE_EXAMPLE, "settings": SETTINGS_EXAMPLE, "name": "audit run 1"}]})
    theta0: str | None = Field(None, max_length=64,
                               description="checkpoint id of the initial weights (methods that need it)")
    thetaf: str = Field(..., max_length=64, description="checkpoint id of the final weights")
    recipe: Recipe
    settings: _JobSettingsType = Field(..., description="the method and its settings")  # type: ignore[valid-type]
    name: str | None = Field(None, max_length=200)

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("the name may not hold control characters")
        return v


class ProgressPublic(BaseModel):
    iteration: int
    iterations: int
    fraction: float
    loss: float | None
    eta_seconds: float | None


class LrCandidatePublic(BaseModel):
    lr: float
    score: float | None
    status: str


class JobPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "c0ffee00c0ffee00c0ffee00c0ffee00", "name": "audit run 1", "status": "running",
        "progress": {"iteration": 120, "iterations": 200, "fraction": 0.6, "loss": 0.0123,
                     "eta_seconds": 42.0},
        "error": None, "created_at": "2025-01-01T00:00:00Z", "started_at": "2025-01-01T00:00:02Z",
        "finished_at": None, "worker": "celery@gpu-1", "attempts": 1, "phase": "run",
        "theta0": "5f0c8e3b9d2a4f6e8a1b2c3d4e5f6a7b", "thetaf": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "lr_search": None, "chosen_lr": None, "cancel_requested": False, "resumed_from": None}]})
    id: str
    name: str | None
    status: JobStatus
    phase: Phase
    progress: ProgressPublic
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    attempts: int
    theta0: str | None
    thetaf: str
    lr_search: list[LrCandidatePublic] | None
    chosen_lr: float | None
    cancel_requested: bool
    resumed_from: int | None = Field(None, description="iteration the last run resumed from")
    recipe: dict[str, Any]
    settings: dict[str, Any]
    summary: dict[str, Any] | None = None


class JobList(BaseModel):
    data: list[JobPublic]
    count: int
    next_cursor: str | None


class MetricPoint(BaseModel):
    """One sampled iteration: ``iteration`` and the method's metrics (SimuDy: loss, cosine, tv)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {"type": ["number", "null"]}})
    iteration: int


class LossCurve(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"metrics": ["loss", "cosine", "tv"], "points": [
        {"iteration": 10, "loss": 0.5, "cosine": 0.4, "tv": 0.01}]}]})
    metrics: list[str] = Field(description="the method's metric names, in order")
    points: list[MetricPoint]


class Metrics(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"metrics": {
        "ssim_paper_mean": 0.41, "ssim_mean": 0.38, "psnr_mean": 14.2, "pairs": []}}]})
    metrics: dict[str, Any]


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    action: str
    object_type: str
    object_id: str
    api_key_id: str | None
    detail: dict[str, Any] | None
    created_at: datetime


class AuditFilters(BaseModel):
    """The audit trail's filters, shared by ``GET /v1/audit``, its CSV export and the dashboard's
    page: an event is listed when it matches every one given. Times are ISO 8601 (a naive one is
    UTC); ``since`` is inclusive and ``until`` exclusive, so back-to-back ranges never list an
    event twice."""

    model_config = ConfigDict(use_enum_values=True)
    action: AuditAction | None = Field(None, examples=["upload"])
    object_id: str | None = Field(None, pattern=ID_PATTERN, examples=["5f0c8e3b9d2a4f6e8a1b2c3d4e5f6a7b"],
                                  description="a job, checkpoint or key id: every event about it")
    api_key_id: str | None = Field(None, pattern=ID_PATTERN, description="the id of the key that acted")
    since: datetime | None = Field(None, examples=["2025-01-01T00:00:00Z"],
                                   description="events created at or after this time")
    until: datetime | None = Field(None, examples=["2025-02-01T00:00:00Z"],
                                   description="events created before this time")

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso_8601(cls, value: Any) -> Any:
        """ISO 8601 only (pydantic alone would also read a number as a Unix time)."""
        if not isinstance(value, str):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("iso_8601", "{value} is not an ISO 8601 date and time "
                                      "(e.g. 2025-01-31T12:00:00Z)", {"value": repr(value)}) from None

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        except OverflowError:
            raise PydanticCustomError("datetime_range", "{value} is out of range in UTC",
                                      {"value": value.isoformat()}) from None

    @field_validator("until")
    @classmethod
    def _not_before_since(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and since > until:
            raise PydanticCustomError("time_range", "since ({since}) is after until ({until})",
                                      {"since": since.isoformat(), "until": until.isoformat()})
        return until

    def query_string(self) -> str:
        """The filters given, as the query string of a link that keeps them."""
        return urlencode(self.model_dump(mode="json", exclude_none=True))


class AuditList(BaseModel):
    data: list[AuditEventPublic]
    count: int
    next_cursor: str | None


class CatalogEntry(BaseModel):
    name: str = Field(examples=["resnet18"])
    description: str


class MethodEntry(CatalogEntry):
    needs_theta0: bool
    searches_lr: bool
    metrics: list[str]
    settings_schema: dict[str, Any] = Field(description="JSON schema of the method's settings")
    defaults: dict[str, Any]


class Catalog(BaseModel):
    methods: list[MethodEntry]
    architectures: list[CatalogEntry]
    metrics: list[CatalogEntry]
    pairings: list[CatalogEntry]
    pairing_metric: str
