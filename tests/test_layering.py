"""The packages import only what docs/architecture.md allows: the engine knows nothing of the
service, the API and the worker never import each other, the client talks HTTP only. Every
import counts, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"core", "service", "api", "worker", "client", "bench", "simudy", "migrations", "tests"}
ALLOWED = {  # package -> our packages it may import
    "core": {"core"},
    "service": {"core", "service", "migrations"},
    "api": {"core", "service", "api"},
    "worker": {"core", "service", "worker"},
    "client": {"core", "client"},
    "bench": {"core", "client", "bench"},  # it drives the service as a client does
    "migrations": {"service", "migrations"},
}
WEB_AND_QUEUE = {"fastapi", "starlette", "uvicorn", "celery", "kombu", "billiard", "sqlalchemy",
                 "alembic", "psycopg", "redis", "boto3", "botocore", "httpx", "python_multipart"}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_package_imports_only_what_its_layer_allows():
    problems = []
    for package, allowed in ALLOWED.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for path in files:
            for name in imports_of(path):
                if name in OURS and name not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
                if package == "core" and name in WEB_AND_QUEUE:
                    problems.append(f"{path.relative_to(ROOT)} imports {name} (core is framework-free)")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from worker.run import run_job\n")
    assert "worker" in imports_of(bad)
