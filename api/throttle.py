"""Throttling of failed authentication, per client address: after
``SIMUDY_AUTH_FAILURES_PER_MINUTE`` failures within a minute an address gets 429 with
Retry-After until the minute has passed, so keys cannot be guessed at full speed. In memory, per
API process (each process throttles on its own); successful requests are never counted."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from service.config import ServiceConfig

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000  # the oldest addresses are forgotten first beyond this


class FailedAuthThrottle:
    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and now - times[0] > WINDOW_SECONDS:
            times.popleft()
        return times

    def retry_after(self, address: str, config: ServiceConfig) -> int:
        """Seconds this address must wait (0: it may try)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < config.auth_failures_per_minute:
                return 0
            return max(1, math.ceil(WINDOW_SECONDS - (now - times[0])))

    def failed(self, address: str, config: ServiceConfig) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            times.append(now)
            self._failures.pop(address, None)
            self._failures[address] = times  # most recent last
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.pop(next(iter(self._failures)))
