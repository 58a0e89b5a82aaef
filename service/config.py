"""Service configuration: one ``ServiceConfig`` (pydantic-settings) read once from ``SIMUDY_*``
environment variables. (A job's *settings* are something else: ``core.job_settings``.)

Bad configuration fails at start-up with one line naming the variable, not at the first request.
The execution part (device, precision, checkpoint segments, threads) is the worker's, not the
job's: ``execution()`` hands it to the engine.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import SimudyError
from core.execution import Execution

VAR_DIR = Path("var")


class ConfigError(SimudyError):
    """The service configuration (environment) is invalid."""


class ServiceConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMUDY_", extra="ignore")

    database_url: str = Field(f"sqlite:///{VAR_DIR}/simudy.sqlite",
                              description="SQLAlchemy URL; postgresql:// uses psycopg 3")
    broker_url: str = Field(f"sqla+sqlite:///{VAR_DIR}/broker.sqlite",
                            description="Celery broker; the default needs no server")
    queue_prefix: str = Field("", description="key prefix on the broker (isolates deployments)")
    storage_url: str = Field(f"file://{VAR_DIR.resolve()}/objects",
                             description="file:///abs/path or s3://bucket/prefix")
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    max_upload_bytes: int = Field(2 * 1024**3, ge=1024)
    max_truth_bytes: int = Field(256 * 1024**2, ge=1024, description="a truth npz upload")
    max_json_bytes: int = Field(1024**2, ge=1024, description="a JSON request body")
    upload_idle_seconds: float = Field(60.0, gt=0, description="an upload that sends nothing this "
                                       "long is refused (408)")
    max_scoring_pixel_pairs: int = Field(60_000_000, ge=1, description="scoring work the API does for "
                                         "one /truth request (originals x reconstructions x values)")
    auth_cache_seconds: float = Field(2.0, ge=0, description="an API process remembers a valid key "
                                      "this long (a revoked key stops working within it); 0: off")
    status_cache_seconds: float = Field(0.5, ge=0, description="concurrent polls of one job share one "
                                        "read this fresh; 0: off")
    access_log: bool = Field(True, description="the API logs one line per request (off behind a "
                             "proxy that keeps its own: at thousands of polls a second the lines "
                             "cost a tenth of the API's CPU)")
    auth_failures_per_minute: int = Field(30, ge=1, description="failed authentications from one "
                                          "address before it gets 429")
    db_pool_size: int = Field(10, ge=1, description="database connections per process")
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_seconds: float = Field(10.0, gt=0, description="wait for a connection, then 503")
    db_retry_seconds: float = Field(120.0, gt=0, description="how long a worker retries a dropped "
                                    "database before giving the job up (the job resumes later)")
    max_images: int = Field(500, ge=1)
    max_iterations: int = Field(100_000, ge=1)
    max_simulated_steps: int = Field(10_000, ge=1, description="epochs x batches per epoch")
    max_image_pixels: int = Field(3 * 256 * 256, ge=1, description="C x H x W")
    max_lr_candidates: int = Field(32, ge=1)
    max_classes: int = Field(10_000, ge=2)
    max_model_parameters: int = Field(300_000_000, ge=1, description="parameters of a recipe's model")
    max_sample_passes: int = Field(10**10, ge=1, description="image forward/backward passes of one job")
    max_job_seconds: int = Field(48 * 3600, ge=10, description="time limit of one job run")

    heartbeat_seconds: float = Field(10.0, gt=0, description="how often a running job beats")
    heartbeat_timeout_seconds: float = Field(120.0, gt=0, description="no beat for this long: worker died")
    sweep_interval_seconds: float = Field(30.0, gt=0, description="how often stale jobs are re-queued")
    state_save_seconds: float = Field(300.0, gt=0, description="how often a running job saves its state")
    progress_flush_seconds: float = Field(5.0, ge=0, description="loss points/progress write throttle")
    cancel_check_seconds: float = Field(2.0, ge=0, description="cancel flag read throttle")
    preview_seconds: float = Field(30.0, gt=0, description="how often a running job stores "
                                   "preview.png (its current images)")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="dashboard sign-in lifetime")
    max_attempts: int = Field(5, ge=1, description="runs of one job before it is failed")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="worker device")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="worker default precision "
                                               "(a job may ask for another)")
    checkpoint_segments: int = Field(0, ge=0, description="worker: recompute the unrolled graph k "
                                     "steps at a time (0: keep it whole)")
    threads: int | None = Field(None, ge=1, description="worker: CPU threads for torch")
    method_modules: str = Field("", description="comma-separated modules that register more "
                                "reconstruction methods (plugins)")

    @field_validator("database_url")
    @classmethod
    def _database(cls, v: str) -> str:
        scheme = v.split("://", 1)[0]
        if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
            return "postgresql+psycopg://" + v.split("://", 1)[1]
        if not (scheme.startswith("postgresql") or scheme.startswith("sqlite")):
            raise ValueError("must be a postgresql:// or sqlite:/// URL")
        return v

    @field_validator("storage_url")
    @classmethod
    def _storage(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme == "file":
            if not u.path.startswith("/"):
                raise ValueError("file:// storage needs an absolute path (file:///abs/path)")
        elif u.scheme == "s3":
            if not u.netloc:
                raise ValueError("s3:// storage needs a bucket (s3://bucket/prefix)")
        else:
            raise ValueError("must be file:///abs/path or s3://bucket/prefix")
        return v

    def execution(self) -> Execution:
        return Execution(device=self.device, precision=self.precision,
                         checkpoint_segments=self.checkpoint_segments, threads=self.threads)

    @property
    def method_module_names(self) -> list[str]:
        return [m.strip() for m in self.method_modules.split(",") if m.strip()]

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite:///"):
            rest = self.database_url[len("sqlite:///"):]
            return Path(rest) if rest and rest != ":memory:" else None
        return None


def load_config(**overrides: object) -> ServiceConfig:
    """Read the environment now; raise ``ConfigError`` with one line on bad values. Also
    imports the configured method plugins, so every process offers the same methods."""
    try:
        config = ServiceConfig(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        parts = [f"SIMUDY_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in err.errors()]
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None
    from core.methods import load_method_modules

    try:
        load_method_modules(config.method_module_names)
    except SimudyError as err:
        raise ConfigError(f"invalid configuration: SIMUDY_METHOD_MODULES: {err}") from None
    return config


@lru_cache(maxsize=1)
def get_config() -> ServiceConfig:
    """The process's configuration, read once."""
    return load_config()
