"""What produced a result: the installed simudy version and the source commit. The commit comes
from ``SIMUDY_COMMIT`` (set by a container build, which has no git checkout) or else from the
git checkout the code runs from (marked when it has uncommitted changes), and is "unknown" when
neither says. Read once per process."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def simudy_version() -> str:
    try:
        return metadata.version("simudy")
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def source_commit() -> str:
    if os.environ.get("SIMUDY_COMMIT"):
        return os.environ["SIMUDY_COMMIT"].strip()
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        modified = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} (with local changes)" if commit and modified else (commit or "unknown")
