"""What peak memory means here. On the CPU: the process's peak resident set (``ru_maxrss``)
of a fresh process that only loads the checkpoints and reconstructs, and its resident set just
before the first iteration, so the reconstruction's own share is the difference. On a GPU:
``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache or the context)."""

from __future__ import annotations

import os
import resource
import sys

import torch

CPU_NOTE = ("peak RSS of a fresh process that loads theta0/thetaf and reconstructs "
            "(includes Python, torch and the weights); baseline_memory_bytes in the JSON is its "
            "RSS before the first iteration")
GPU_NOTE = "torch.cuda.max_memory_allocated during the reconstruction"


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def start(device: torch.device) -> int:
    """Call right before the measured work; returns the baseline."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return current_rss_bytes()


def peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()


def note(device: torch.device) -> str:
    return GPU_NOTE if device.type == "cuda" else CPU_NOTE
