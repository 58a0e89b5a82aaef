"""Service settings: one ``Settings`` object read once from ``SIMUDY_*`` environment variables.

Bad configuration fails at start-up with one line naming the variable, not at the first request.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import SimudyError

VAR_DIR = Path("var")


class ConfigError(SimudyError):
    """The service configuration (environment) is invalid."""


class Settings(BaseSettings):
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
    max_images: int = Field(500, ge=1)
    max_iterations: int = Field(100_000, ge=1)
    max_simulated_steps: int = Field(10_000, ge=1, description="epochs x batches per epoch")
    max_image_pixels: int = Field(3 * 256 * 256, ge=1, description="C x H x W")
    max_lr_candidates: int = Field(32, ge=1)
    max_job_seconds: int = Field(48 * 3600, ge=10, description="time limit of one job run")

    heartbeat_seconds: float = Field(10.0, gt=0, description="how often a running job beats")
    heartbeat_timeout_seconds: float = Field(120.0, gt=0, description="no beat for this long: worker died")
    sweep_interval_seconds: float = Field(30.0, gt=0, description="how often stale jobs are re-queued")
    state_save_seconds: float = Field(300.0, gt=0, description="how often a running job saves its state")
    progress_flush_seconds: float = Field(5.0, ge=0, description="loss points/progress write throttle")
    cancel_check_seconds: float = Field(2.0, ge=0, description="cancel flag read throttle")
    max_attempts: int = Field(5, ge=1, description="runs of one job before it is failed")
    device: str = Field("auto", description="worker device: auto, cpu or cuda")

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

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite:///"):
            rest = self.database_url[len("sqlite:///"):]
            return Path(rest) if rest and rest != ":memory:" else None
        return None


def load_settings(**overrides: object) -> Settings:
    """Read the environment now; raise ``ConfigError`` with one line on bad values."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        parts = [f"SIMUDY_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in err.errors()]
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
