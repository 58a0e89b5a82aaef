"""Schemathesis over the live server's OpenAPI document, with a valid key and real ids (a
checkpoint, a finished job) so the generated requests reach past the 404s: no 5xx, every
status code and body as documented."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import LiveServer, unavailable
from tests.service.helpers import final, submit, wait_job

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
        app_client, teams, workers, service_env, tmp_root, tmp_path):
    binary = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not os.path.exists(binary):
        unavailable("schemathesis is not installed (the test extra installs it)")
    worker = workers.start("fuzz")
    job = submit(app_client, teams["a"], iterations=5)
    job = wait_job(app_client, teams["a"], job["id"], final, timeout=90)
    workers.stop(worker)
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\njob_id = "{job["id"]}"\ncheckpoint_id = "{job["theta0"]}"\n')
    server = LiveServer(service_env, tmp_root, "fuzz")
    try:
        r = subprocess.run(
            [binary, "--config-file", str(config), "run", f"{server.url}/openapi.json",
             "-H", f"Authorization: Bearer {teams['a_key']}", "--checks", CHECKS,
             "--max-examples", "25", "--workers", "1", "--seed", "1", "--suppress-health-check", "all",
             "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "30"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        server.stop()
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
