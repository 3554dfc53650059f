"""The long-running process: scheduler, delivery loop, signals. apscheduler lives here.

One asyncio event loop runs everything:

* one APScheduler job per enabled feed (interval + jitter, ``max_instances=1``,
  ``coalesce=True``), each calling :func:`monitor.pipeline.poll_feed`;
* a delivery loop of its own that sends pending alerts, woken right after a poll stores
  new hits and otherwise every ``delivery.interval``.

SIGTERM / SIGINT: no new polls start; a poll in flight gets ``STOP_GRACE`` seconds to
finish, then is cancelled (its transaction was not committed, so the next start redoes
it); pending deliveries stay in the database for the next start. Exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Settings
from monitor.deliver import Channel, build_channels, deliver_due
from monitor.errors import ConfigError, ConfigErrors
from monitor.fetch import make_client
from monitor.match import Matcher
from monitor.models import FeedConfig
from monitor.pipeline import poll_feed
from monitor.ruleset import check_references, load_rules
from monitor.store import Store

log = logging.getLogger(__name__)
STOP_GRACE = 10.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def validate(settings: Settings) -> tuple[Matcher, dict[str, Channel]]:
    """Load rules and build channels; raise ConfigErrors listing every problem."""
    ruleset = load_rules(settings.rules_dir)
    errors = list(ruleset.errors)
    errors += check_references(
        ruleset.rules, (f.name for f in settings.feeds), (c.name for c in settings.channels)
    )
    channels, channel_errors = build_channels(settings.channels)
    errors += [ConfigError(message, str(settings.path)) for message in channel_errors]
    if errors:
        raise ConfigErrors(errors)
    return Matcher(ruleset.rules), channels


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.transport = transport
        self.matcher, self.channels = validate(settings)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._polls: set[asyncio.Task[object]] = set()

    def request_stop(self, reason: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("stopping reason=%s", reason)
            self._stop.set()
            self._wake.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        store = Store(self.settings.database)
        client = make_client(self.settings.user_agent, self.transport)
        scheduler = AsyncIOScheduler(timezone=UTC)
        feeds = [f for f in self.settings.feeds if f.enabled]
        for feed in feeds:
            scheduler.add_job(
                self._poll_job,
                IntervalTrigger(seconds=feed.interval, jitter=self.settings.jitter or None),
                args=[feed, client, store],
                id=f"feed:{feed.name}",
                name=feed.name,
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),  # first poll right away
                misfire_grace_time=None,
            )
        log.info(
            "started feeds=%d rules=%d channels=%d database=%s",
            len(feeds),
            len(self.matcher),
            len(self.channels),
            self.settings.database,
        )
        scheduler.start()
        delivery = asyncio.create_task(self._delivery_loop(store))
        try:
            await self._stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self._finish_polls()
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
            await client.aclose()
            store.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("stopped")
        return 0

    async def _poll_job(self, feed: FeedConfig, client: httpx.AsyncClient, store: Store) -> None:
        if self._stop.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self._polls.add(task)
        try:
            result = await poll_feed(
                feed,
                client=client,
                store=store,
                matcher=self.matcher,
                default_channels=self.settings.default_channels,
                now=self.now,
                timeout=self.settings.fetch_timeout,
            )
            if result.hits:
                self._wake.set()
        except Exception:  # one feed's bug must never stop the others
            log.exception("poll_crashed feed=%s", feed.name)
        finally:
            self._polls.discard(task)

    async def _finish_polls(self) -> None:
        if not self._polls:
            return
        log.info("waiting_for_polls count=%d grace=%.0fs", len(self._polls), STOP_GRACE)
        _, pending = await asyncio.wait(set(self._polls), timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _delivery_loop(self, store: Store) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await deliver_due(
                    store,
                    self.channels,
                    self.now,
                    retry_min=self.settings.retry_min,
                    retry_max=self.settings.retry_max,
                )
            except Exception:
                log.exception("delivery_loop_error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.delivery_interval)
