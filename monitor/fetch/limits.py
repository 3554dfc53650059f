"""Concurrency caps: how many hops may run at once, to one host and in all.

One daemon fetches every feed through one client; without a cap per host, a hundred
feeds on one server would open a hundred connections to it at once (and be rate
limited or banned), and without a global cap a first poll of thousands of feeds would
open thousands of sockets. The caps hold per hop, not per fetch, so a redirect to
another host queues for that host.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from monitor.fetch.guard import _host_key


@dataclass
class _HostSlots:
    semaphore: asyncio.Semaphore
    users: int = 0


class _Limiter:
    """At most ``per_host`` hops to one host and ``total`` hops in all, at once.

    A hop takes its host's slot first, then a global one, and holds one of each at most,
    so two fetches can never wait on each other in a cycle.
    """

    def __init__(self, per_host: int, total: int) -> None:
        self._per_host = per_host
        self._total = asyncio.Semaphore(total)
        self._hosts: dict[str, _HostSlots] = {}
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        key = _host_key(host)
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = _HostSlots(asyncio.Semaphore(self._per_host))
        entry.users += 1
        self.waiting += 1
        queued = True
        try:
            async with entry.semaphore, self._total:
                self.waiting -= 1
                queued = False
                yield
        finally:
            if queued:
                self.waiting -= 1
            entry.users -= 1
            if entry.users == 0:
                del self._hosts[key]  # forget hosts nobody is fetching
