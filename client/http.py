"""A small client of the simudy HTTP API, for `simudy submit`, `simudy demo` and scripts that
audit models through a running service. Every failure (unreachable service, HTTP error) is a
``SimudyError`` whose message is one readable line naming the step and the service's detail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import httpx

from core.errors import SimudyError

FINAL = ("succeeded", "failed", "cancelled")


def read_key(key_file: str | Path) -> str:
    path = Path(key_file)
    try:
        key = path.read_text().strip()
    except OSError:
        raise SimudyError(f"no API key in {key_file}: pass --key-file (or start a local service "
                          "with `simudy local`, which writes var/api-key)") from None
    if not key:
        raise SimudyError(f"{key_file} is empty: it should hold an API key")
    return key


class ServiceClient:
    """One team's view of the service (its API key)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    @classmethod
    def connect(cls, url: str, key: str, *, timeout: float = 120) -> "ServiceClient":
        return cls(httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout))

    def __enter__(self) -> "ServiceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise SimudyError(f"{what}: cannot reach the service at {self.http.base_url}: {err}") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text[:200]
            raise SimudyError(f"{what}: HTTP {resp.status_code}: {detail}")
        return resp

    def ping(self) -> None:
        self._call("GET", "/healthz", "health check")

    def upload_checkpoint(self, path: Path, *, what: str = "upload") -> dict:
        with open(path, "rb") as fh:
            return self._call("POST", "/v1/checkpoints", f"{what} {path.name}",
                              files={"file": (path.name, fh)}).json()

    def submit_job(self, *, theta0: str | None, thetaf: str, recipe: dict, settings: dict,
                   name: str | None = None) -> dict:
        body = {"theta0": theta0, "thetaf": thetaf, "recipe": recipe, "settings": settings, "name": name}
        return self._call("POST", "/v1/jobs", "submit", json=body).json()

    def get_job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}", "poll").json()

    def wait(self, job_id: str, *, on_update: Callable[[dict], None] | None = None,
             poll_seconds: float = 2.0) -> dict:
        """Poll until the job is succeeded, failed or cancelled; return it."""
        while True:
            job = self.get_job(job_id)
            if on_update:
                on_update(job)
            if job["status"] in FINAL:
                return job
            time.sleep(poll_seconds)

    def download(self, job_id: str, name: str) -> bytes:
        """A stored file of the job: one of ``core.outputs.FILES`` or ``pairs.png``."""
        return self._call("GET", f"/v1/jobs/{job_id}/{name}", f"download {name}").content

    def score(self, job_id: str, truth: bytes) -> dict:
        """Score the job against the true training images (npz: x uint8 NHWC, y)."""
        return self._call("POST", f"/v1/jobs/{job_id}/truth", "score",
                          files={"file": ("truth.npz", truth)}).json()


def progress_line(job: dict) -> str:
    p = job["progress"]
    loss = f"{p['loss']:.4g}" if p.get("loss") is not None else "-"
    eta = f" eta {p['eta_seconds']:.0f}s" if p.get("eta_seconds") is not None else ""
    return f"{job['status']:>9} {job['phase']} {p['iteration']}/{p['iterations']} loss {loss}{eta}"
