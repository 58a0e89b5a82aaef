"""Short-lived, per-process caches for the reads every poll repeats, with one load in flight
per key: when 200 clients poll one job, one database read serves them all.

- ``callers``: API key (by its sha256) -> the caller, for ``SIMUDY_AUTH_CACHE_SECONDS``; a
  revoked key therefore stops working within that time (failed look-ups are never cached).
- ``job_status``: (team, job) -> the JSON of the job's public view, for
  ``SIMUDY_STATUS_CACHE_SECONDS``; a cancel or delete through this process drops its entry at once.

An entry is never served older than its ``ttl``. Past half of it, the first request starts one
refresh in the background and is still answered from the entry, so under a steady poll nobody
waits for a read: a read runs in a worker thread that must win the GIL back from the busy event
loop at each of its database round trips, and every poll of the job would wait for it.

A hit still yields to the event loop once before it answers. A poll answered entirely from
memory never suspends, and without that yield the slowest polls starved: 200 connections on
two API processes measured p99 about 1 s without it and 0.14-0.39 s with it (same p50).

Both are bounded (least recently stored entries go first) and keyed so that nothing one team
may see is ever served to another.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, float, V]] = OrderedDict()  # refresh at, expires
        self._loading: dict[Hashable, asyncio.Task[V]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]], ttl: float) -> V:
        """The cached value if younger than ``ttl`` seconds (refreshed in the background past
        ``ttl / 2``); else the result of ``load()``, shared by every caller that asks for ``key``
        while it runs. Exceptions are not cached, and a refresh that fails drops the entry."""
        if ttl <= 0:
            return await load()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            if hit[0] <= now and key not in self._loading:
                self._start(key, load, ttl)
            await asyncio.sleep(0)  # let the loop read other connections first (module docstring)
            return hit[2]
        pending = self._loading.get(key) or self._start(key, load, ttl)
        return await asyncio.shield(pending)

    def _start(self, key: Hashable, load: Callable[[], Awaitable[V]], ttl: float) -> asyncio.Task[V]:
        async def run() -> V:
            try:
                value = await load()
            except BaseException:
                if self._loading.get(key) is task:
                    self._entries.pop(key, None)
                raise
            finally:
                current = self._loading.get(key) is task
                if current:
                    del self._loading[key]
            if not current:  # dropped while it ran: what it read may predate the change
                return value
            now = time.monotonic()
            self._entries[key] = (now + ttl / 2, now + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return value

        task = asyncio.get_running_loop().create_task(run())
        # a background refresh nobody awaits must not log "exception was never retrieved"
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._loading[key] = task
        return task

    def drop(self, key: Hashable) -> None:
        """Forget ``key``, and whatever a load still running for it will read."""
        self._entries.pop(key, None)
        self._loading.pop(key, None)
