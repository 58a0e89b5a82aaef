"""Short-lived, per-process caches for the reads every poll repeats, with one load in flight
per key: when 200 clients poll one job, one database read serves them all.

- ``callers``: API key (by its sha256) -> the caller, for ``SIMUDY_AUTH_CACHE_SECONDS``; a
  revoked key therefore stops working within that time (failed look-ups are never cached).
- ``job_status``: (team, job) -> the job's public view, for ``SIMUDY_STATUS_CACHE_SECONDS``;
  a cancel or delete through this process drops its entry at once.

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
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[V]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]], ttl: float) -> V:
        """The cached value if younger than ``ttl`` seconds; else the result of ``load()``,
        shared by every caller that asks for ``key`` while it runs. Exceptions are not cached."""
        if ttl <= 0:
            return await load()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        else:
            future.set_result(value)
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return value
        finally:
            del self._loading[key]

    def drop(self, key: Hashable) -> None:
        self._entries.pop(key, None)
