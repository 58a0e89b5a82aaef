"""Deployment files: docker-compose.yml, Dockerfile.gpu, .dockerignore, .env.example.

Tools (docker-compose, hadolint) that are missing make a test skip on a developer machine and
fail under CI (env CI set), so CI never passes without having checked them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile.gpu"
ENV_EXAMPLE = ROOT / ".env.example"
SECRET_VARS = ("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|ROOT_USER")
APP_SERVICES = ("migrate", "api", "worker")


def _tool(name: str) -> str:
    """Path of a command-line tool (the venv's first); skip, or fail under CI, if missing."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed (required under CI)")
    pytest.skip(f"{name} is not installed")


def _compose(*args: str, env_file: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    argv = [_tool("docker-compose"), "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    return subprocess.run(
        [*argv, "--env-file", str(env_file), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # resolves the `<<: *simudy` merges


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (raw.strip() for raw in text.splitlines())
    return [
        (op.upper(), arg.strip())
        for op, _, arg in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_config_is_valid_with_example_env():
    result = _compose("config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "AWS_" in result.stderr, result.stderr


def test_compose_has_required_services(services):
    assert {"postgres", "redis", "minio", "createbucket", *APP_SERVICES} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["createbucket"]["image"].startswith("minio/mc:")
    for name in ("postgres", "redis", "minio"):
        assert "test" in services[name].get("healthcheck", {}), name
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert "mc mb" in " ".join(services["createbucket"]["command"])


def test_no_floating_image_tags(services):
    for name, svc in services.items():
        if "image" in svc and "build" not in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), name


def test_app_services_share_one_image_and_settings(services):
    images = {services[n]["image"] for n in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == "Dockerfile.gpu", name
        env = svc["environment"]
        assert env["SIMUDY_DATABASE_URL"].startswith("postgresql+psycopg://simudy:"), name
        assert env["SIMUDY_DATABASE_URL"].endswith("@postgres:5432/simudy"), name
        assert env["SIMUDY_BROKER_URL"] == "redis://redis:6379/0", name
        assert env["SIMUDY_STORAGE_URL"] == "s3://simudy/objects", name
        assert env["SIMUDY_S3_ENDPOINT_URL"] == "http://minio:9000", name


def test_startup_order(services):
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["createbucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["createbucket"]["condition"] == "service_completed_successfully", name


def test_api_serves_on_8000_with_healthcheck(services):
    api = services["api"]
    assert api["command"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "8000:8000" in api["ports"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_worker_reserves_one_nvidia_gpu(services):
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices


def test_no_plaintext_secrets_in_compose(services):
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            value = str(value)
            if SECRET_KEY.search(key):  # the value must be a required variable, no default
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{name}.{key} = {value!r}"
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):  # credentials in URLs
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", password), f"{name}.{key} = {value!r}"
    for var in SECRET_VARS:  # no `${SECRET:-default}` anywhere
        assert not re.search(r"\$\{" + var + r":?-", COMPOSE.read_text()), var


def test_env_example_holds_only_dev_values():
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(SECRET_VARS) <= set(values)
    for key, value in values.items():
        assert value.startswith("dev-only-"), f"{key} in .env.example must be an obvious dev value"


# --- Dockerfile.gpu / .dockerignore ------------------------------------------------------------


def test_hadolint_passes():
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_ignores_only_apt_pinning():
    ignored = re.findall(r"#\s*hadolint\s+ignore=([\w,]+)", DOCKERFILE.read_text())
    assert {rule for group in ignored for rule in group.split(",")} <= {"DL3008"}


def test_dockerfile_runs_as_non_root_with_healthcheck():
    instructions = _dockerfile_instructions()
    users = [arg for op, arg in instructions if op == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    checks = [arg for op, arg in instructions if op == "HEALTHCHECK"]
    assert checks and "NONE" not in checks[-1].split() and "/healthz" in checks[-1]
    assert ("EXPOSE", "8000") in instructions
    assert ("ENTRYPOINT", '["simudy"]') in instructions
    base = next(arg for op, arg in instructions if op == "FROM")
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and not base.endswith(":latest")


def test_dockerignore_keeps_local_state_out_of_the_image():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "var", ".env", "bench/out"} <= patterns
