"""``simudy local``: everything on one machine with the embedded defaults (SQLite, a broker in
a SQLite file, objects in ``var/objects``), CPU: bind the port first (a port in use is said in
one line before anything starts), migrate, make a local team and key on first start, run one
worker as a child process and the API in the foreground, one access-log line per request as
``serve`` (``SIMUDY_ACCESS_LOG``). Ctrl-C stops both."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from core.errors import SimudyError

LOCAL_TEAM = "local"


def ensure_key(key_file: Path) -> str:
    from service.crud.teams import authenticate, create_key, create_team
    from service.db.models import Team
    from service.db.session import session_scope

    with session_scope() as s:
        if key_file.is_file():
            key = key_file.read_text().strip()
            if authenticate(s, key=key) is not None:
                return key
        team = s.query(Team).filter_by(name=LOCAL_TEAM).one_or_none() or create_team(s, name=LOCAL_TEAM)
        _, key = create_key(s, team=team)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket (handed to uvicorn, so no other process can take the port
    between this check and serving)."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise SimudyError(f"port {port} is in use: stop what uses it, or choose another with "
                              "--port") from None
        raise SimudyError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def run_local(*, host: str, port: int, key_file: str) -> int:
    sock = bind(host, port)
    os.environ.setdefault("SIMUDY_DEVICE", "cpu")
    Path("var").mkdir(exist_ok=True)
    from service.config import get_config
    from service.db.migrate import upgrade

    config = get_config()
    upgrade(config.database_url)
    key = ensure_key(Path(key_file))
    print(f"API key (also in {key_file}):\n{key}", flush=True)
    worker = subprocess.Popen([sys.executable, "-m", "simudy", "worker", "--loglevel", "WARNING"],
                              env={**os.environ, "SIMUDY_DEVICE": os.environ["SIMUDY_DEVICE"]})
    try:
        import uvicorn

        from api.main import create_app

        print(f"Dashboard on http://{host}:{port}/ (sign in with the key above); API docs: /docs; "
              f"worker pid {worker.pid}", flush=True)
        uvicorn.Server(uvicorn.Config(create_app(config), log_level="info",
                                      access_log=config.access_log)).run(sockets=[sock])
    finally:
        sock.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0
