"""Where a measurement came from: commit, dirty flag, torch version, device, machine."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from core.execution import device_description

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def shown_path(path: str | Path) -> str:
    """A path as a reader would type it from the repository root: relative when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def device_slug(device: torch.device) -> str:
    """``cpu``, or the GPU's model: ``h100``, ``h200``, ``a100``, ``4090``."""
    if device.type != "cuda":
        return "cpu"
    name = device_description(device).lower().replace("nvidia", "")
    m = re.search(r"[a-z]*\d+[a-z]*", name)
    return m.group(0) if m else re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"


def _code_state() -> tuple[str | None, bool | None]:
    """The commit and whether code differs from it. Where there is no git checkout (the GPU
    machine gets a copy of the working tree without .git), ``SIMUDY_SOURCE_COMMIT`` names it:
    ``<sha>`` or ``<sha>+dirty``, as the one who sent the copy read it off their checkout."""
    given = os.environ.get("SIMUDY_SOURCE_COMMIT")
    if given and _git("rev-parse", "HEAD") is None:
        sha, _, mark = given.partition("+")
        return sha, mark == "dirty"
    # only code counts: the results and the generated table change while measuring
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md",
                  ":!bench/results")
    return _git("rev-parse", "HEAD"), (bool(status) if status is not None else None)


def provenance(device: torch.device) -> dict[str, Any]:
    """Take it when a measurement starts: the code that runs is the code checked out then."""
    commit, dirty = _code_state()
    return {
        "device": device_description(device),
        "commit": commit,
        "dirty": dirty,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def settled(started: dict[str, Any]) -> dict[str, Any]:
    """``started``, marked dirty if the code changed (an edit or a commit) while measuring."""
    commit, dirty = _code_state()
    return {**started, "dirty": True} if dirty or commit != started["commit"] else started
