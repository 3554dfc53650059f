"""The daemon's sending side: one delivery loop per channel over the outbox, woken when
a poll stores new hits, finished (not cut off) at a stop, and a notice to the operator
for each delivery given up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from monitor.config import Settings
from monitor.deliver import Channel, deliver_due
from monitor.match import Matcher
from monitor.metrics import Metrics
from monitor.models import Digest, PendingDelivery
from monitor.store.interface import Storage

# The package's name, for every module of it: the daemon's log lines keep one logger.
log = logging.getLogger(__package__)


class Running(Protocol):
    """What the loops read of the daemon at every round: a reload replaces these, and
    the next round sends with the new ones."""

    settings: Settings
    channels: dict[str, Channel]
    matcher: Matcher


class DeliveryLoops:
    """The delivery loops of one daemon; ``stop`` set ends them before their next send."""

    def __init__(
        self,
        running: Running,
        stop: asyncio.Event,
        *,
        now: Callable[[], datetime],
        metrics: Metrics,
    ) -> None:
        self._running = running
        self._stop = stop
        self._now = now
        self._metrics = metrics
        #: One event per delivery loop: set to make it look for new deliveries now.
        self._wakes: set[asyncio.Event] = set()
        self._deliveries: dict[str | None, asyncio.Task[None]] = {}
        self._store: Storage | None = None

    def start(self, store: Storage) -> None:
        """One delivery loop per channel, so a slow or dead channel (SMTP throttling, a
        timeout) never holds up the others; one more (key None) for rows of channels no
        longer configured. A loop whose channel is removed ends by itself. Called again
        after a reload, it starts the loops of channels added."""
        self._store = store
        for name in [*self._running.channels, None]:
            task = self._deliveries.get(name)
            if task is None or task.done():
                self._deliveries[name] = asyncio.create_task(self._delivery_loop(store, name))

    def wake(self) -> None:
        """Make every loop look for due deliveries now (new hits, a notice, a stop)."""
        for wake in self._wakes:
            wake.set()

    async def finish(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the loops to end (the stop must be set):
        a send in flight is finished and recorded, since a send cut off here would go
        out again after the restart; the loops stop before their next one."""
        delivery = list(self._deliveries.values())
        _, unfinished = await asyncio.wait(delivery, timeout=grace)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*delivery, return_exceptions=True)

    async def _delivery_loop(self, store: Storage, only: str | None) -> None:
        """Send due deliveries of the channel ``only``, or of channels not configured
        (``only`` None), until stopped or the channel is removed. Woken early when a
        poll stores new hits. Reads the channels at every round: a reload applies."""
        wake = asyncio.Event()
        self._wakes.add(wake)
        running = self._running
        try:
            while not self._stop.is_set():
                if only is not None and only not in running.channels:
                    return  # removed by a reload: its rows go to the loop of unknown ones
                wake.clear()  # before sending: hits stored meanwhile set it again
                try:
                    await deliver_due(
                        store,
                        {only: running.channels[only]} if only is not None else {},
                        self._now,
                        policies=running.matcher.policies,
                        retry_min=running.settings.retry_min,
                        retry_max=running.settings.retry_max,
                        max_age=running.settings.delivery_max_age,
                        only=(only,) if only is not None else None,
                        exclude=() if only is not None else tuple(running.channels),
                        on_dead=self._tell_dead,
                        stopping=self._stop.is_set,
                        metrics=self._metrics,
                    )
                except Exception:
                    log.exception("delivery_loop_error channel=%s", only)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), running.settings.delivery_interval)
        finally:
            self._wakes.discard(wake)

    def _tell_dead(self, delivery: PendingDelivery | Digest, error: str) -> None:
        """Tell the operator channels that a delivery was given up (not for a system
        notice: one about a dead notice would die the same way)."""
        settings = self._running.settings
        if self._store is None or not settings.operator_channels:
            return
        if isinstance(delivery, PendingDelivery) and delivery.notice:
            return
        what = (
            f"the {delivery.reason} digest of {delivery.total} alerts"
            if isinstance(delivery, Digest)
            else f"the alert of rule {delivery.rule} on {delivery.title!r}"
        )
        self._store.add_notice(
            "delivery-dead",
            delivery.channel,
            f"delivery #{delivery.id} to {delivery.channel} given up",
            f"Delivery #{delivery.id} ({what}) to channel {delivery.channel} failed for "
            f"longer than delivery.max_age and was given up.\nLast error: {error}\n"
            f"Fix the channel, then: news-monitor deliveries retry {delivery.id}",
            settings.operator_channels,
            self._now(),
        )
        self.wake()
