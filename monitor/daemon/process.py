"""The Daemon: starts the parts of the long-running process, schedules the polls and the
housekeeping jobs on one APScheduler, and stops it all cleanly. apscheduler lives in
this package.

SIGTERM / SIGINT: no new polls start; a poll in flight gets ``STOP_GRACE`` seconds to
finish, then is cancelled (its transaction was not committed, so the next start redoes
it); a send in flight is finished and recorded (within the same grace), pending
deliveries stay in the database for the next start. Exit status 0.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import systemd
from monitor.backlog import Backlog, refresh_vocabulary
from monitor.config import Settings
from monitor.daemon.delivery import DeliveryLoops
from monitor.daemon.indexer import INDEX_EVERY, SearchIndexer
from monitor.daemon.loading import load_matcher, validate
from monitor.daemon.reload import Reloading, files_signature, rules_signature
from monitor.errors import ConfigError, ConfigErrors, StorageBusy, StorageError
from monitor.fetch import Fetcher
from monitor.metrics import Metrics, MetricsServer
from monitor.metrics import serve as serve_metrics
from monitor.models import FeedConfig
from monitor.parse import ParsePool
from monitor.pipeline import PollContext, in_flight, poll_feed
from monitor.store import open_store, upgrade_pending
from monitor.store.interface import Storage
from monitor.stories import Vocabulary

# The package's name, for every module of it: the daemon's log lines keep one logger.
log = logging.getLogger(__package__)
STOP_GRACE = 10.0
#: The first retention run comes this long after the start.
RETENTION_DELAY = timedelta(minutes=5)
#: Seconds systemd is asked to wait for a start that upgrades the database first.
UPGRADE_TIMEOUT = 600.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def announce_upgrade(database: Path) -> bool:
    """If opening ``database`` will migrate it, say so in the log and to systemd, and ask
    for UPGRADE_TIMEOUT more to start (a large database's first start after an upgrade
    can outlast the default start timeout of 90 s). True if it will."""
    if not upgrade_pending(database):
        return False
    log.info("database_upgrade path=%s (the first start after an upgrade takes longer)", database)
    systemd.notify(
        f"EXTEND_TIMEOUT_USEC={int(UPGRADE_TIMEOUT * 1_000_000)}",
        systemd.status("upgrading the database"),
    )
    return True


class Daemon(Reloading):
    """One news-monitor process: :meth:`run` polls, stores and delivers until stopped;
    :meth:`reload` (SIGHUP) applies edited settings and rules (see Reloading)."""

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
        self._signature = rules_signature(settings.rules_dir)
        self.matcher, self.channels = validate(settings)
        self._stop = asyncio.Event()
        #: Polls in flight, and the search index round if one is: a stop waits for them.
        self._polls: set[asyncio.Task[object]] = set()
        #: Story clustering of first polls' backlogs, between polls.
        self._backlog = Backlog()
        self._store: Storage | None = None
        self._indexer = SearchIndexer(settings.database)
        #: Word rarity of recent articles, for story clustering; refreshed hourly.
        self.vocabulary = Vocabulary()
        self.metrics = Metrics()
        self._settings_signature = files_signature(settings.files)
        self._ctx: PollContext | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._delivery = DeliveryLoops(self, self._stop, now=now, metrics=self.metrics)
        #: Feeds no longer scheduled because they answered 410 Gone: polled again when
        #: their stop is cleared (`news-monitor feeds resume`; see _resume_cleared).
        self._stopped: set[str] = set()

    def request_stop(self, reason: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("stopping reason=%s", reason)
            self._stop.set()
            self._delivery.wake()

    async def run(self) -> int:
        """Run until stopped (SIGTERM, SIGINT, request_stop); the exit status, 0."""
        loop = asyncio.get_running_loop()
        self._handle_signals(loop)
        store = self._open_store()
        fetcher = self._fetcher()
        pool = self._parse_pool()
        server = self._serve_metrics(store, pool)
        self._ctx = self._context(self._poll_context(store, fetcher, pool))
        scheduler = self._jobs(store)
        log.info(
            "started feeds=%d rules=%d channels=%d database=%s",
            sum(1 for f in self.settings.feeds if f.enabled),
            len(self.matcher),
            len(self.channels),
            self.settings.database,
        )
        await self._prune_stories(store)  # and word rarity for clustering, before any poll
        scheduler.start()
        clustering = asyncio.create_task(
            self._backlog.run(
                lambda: self._ctx, lambda: self.matcher.policies, self._delivery.wake, self._stop
            )
        )
        self._delivery.start(store)
        await self._heartbeat()
        await self._gauges(store)
        systemd.notify("READY=1", self._status())
        try:
            await self._stop.wait()
        finally:
            await self._wind_down(scheduler, clustering, pool)
            await fetcher.aclose()
            if server is not None:
                server.close()
            await self._indexer.close()
            store.close()
            self._store = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("stopped")
        return 0

    def _handle_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM and SIGINT stop the daemon, SIGHUP reloads its files."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        loop.add_signal_handler(signal.SIGHUP, self.reload, "SIGHUP")

    def _open_store(self) -> Storage:
        """The database opened (upgraded first if need be), and the rules it runs with
        recorded in it."""
        announce_upgrade(self.settings.database)
        store = self._store = open_store(self.settings.database)
        if (frequencies := self._frequencies()) is not None:
            # Recompile with what the stored articles say about word frequencies.
            self.matcher, _ = load_matcher(self.settings, frequencies)
        store.record_rules(self.matcher.rules, self.now())
        return store

    def _fetcher(self) -> Fetcher:
        settings = self.settings
        return Fetcher(
            user_agent=settings.user_agent,
            timeout=settings.fetch_timeout,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            allow_private=settings.fetch_allow_private,
            per_host=settings.fetch_per_host,
            total=settings.fetch_total,
            retry_after_cap=settings.fetch_retry_after_cap,
            now=self.now,
            transport=self.transport,
        )

    def _parse_pool(self) -> ParsePool:
        settings = self.settings
        return ParsePool(
            settings.parse_workers,
            deadline=settings.parse_deadline,
            memory_limit=settings.parse_memory_limit,
            nice=settings.parse_nice,
        )

    def _serve_metrics(self, store: Storage, pool: ParsePool) -> MetricsServer | None:
        """The /metrics and /health endpoint, if metrics.listen is set. An address that
        cannot be listened on is a settings error: the pool and the store are closed
        (nothing else is running yet) and the start refused."""
        settings = self.settings
        if settings.metrics_listen is None:
            return None
        host, port = settings.metrics_listen
        try:
            server = serve_metrics(
                self.metrics, host, port, stale_after=settings.metrics_stale_after
            )
        except OSError as exc:
            pool.close()
            store.close()
            raise ConfigErrors([ConfigError(str(exc), str(settings.path))]) from exc
        log.info("metrics_listening address=%smetrics", server.url)
        return server

    def _poll_context(self, store: Storage, fetcher: Fetcher, pool: ParsePool) -> PollContext:
        """What every poll uses; the settings a reload can change are added by _context."""
        return PollContext(
            store=store,
            fetch=fetcher.fetch,
            parse=pool.parse,
            parse_matched=pool.parse_matched,
            default_channels=(),
            now=self.now,
            slots=in_flight(self.settings.fetch_total, self.settings.parse_workers),
            vocabulary=self.vocabulary,
            metrics=self.metrics,
        )

    def _jobs(self, store: Storage) -> AsyncIOScheduler:
        """The scheduler, not started yet, with a job per enabled feed and the
        housekeeping jobs."""
        scheduler = self._scheduler = AsyncIOScheduler(timezone=UTC)
        for feed in self.settings.feeds:
            if feed.enabled:
                self._schedule(feed)
        housekeeping: tuple[
            tuple[Callable[..., Awaitable[None]], IntervalTrigger, list[Any], str], ...
        ] = (
            (self._prune_stories, IntervalTrigger(hours=1), [store], "stories:prune"),
            # Daily, the first a few minutes after start: not before READY (a first prune
            # of a large database must not hold up the start or the watchdog).
            (
                self._retention,
                IntervalTrigger(days=1, start_date=datetime.now(UTC) + RETENTION_DELAY),
                [store],
                "retention",
            ),
            (
                self._check_files,
                IntervalTrigger(seconds=self.settings.reload_interval),
                [],
                "reload",
            ),
            (self._heartbeat, IntervalTrigger(seconds=self._beat_every()), [], "heartbeat"),
            (self._gauges, IntervalTrigger(minutes=1), [store], "metrics:gauges"),
            (self._index_search, IntervalTrigger(seconds=INDEX_EVERY), [], "search:index"),
        )
        for job, trigger, args, job_id in housekeeping:
            scheduler.add_job(
                job,
                trigger,
                args=args,
                id=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,  # a late heartbeat still runs, never skipped
            )
        return scheduler

    async def _wind_down(
        self, scheduler: AsyncIOScheduler, clustering: asyncio.Task[None], pool: ParsePool
    ) -> None:
        """The first half of a stop: polls, clustering, parse workers and sends ended,
        each given what it needs to finish cleanly."""
        systemd.notify("STOPPING=1")
        # Paused, not shut down, while polls in flight finish: shutting down cancels
        # the jobs still running, which would cut the grace period short.
        scheduler.pause()
        self._indexer.request_stop()
        await self._finish_polls()
        scheduler.shutdown(wait=False)
        clustering.cancel()  # between two steps: each is one transaction
        await asyncio.gather(clustering, return_exceptions=True)
        # After the polls: closing kills the workers, so no parse is cut short.
        await asyncio.to_thread(pool.close)
        await self._delivery.finish(STOP_GRACE)

    def _schedule(self, feed: FeedConfig) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._poll_job,
            IntervalTrigger(seconds=feed.interval, jitter=self.settings.jitter or None),
            args=[feed.name],
            id=f"feed:{feed.name}",
            name=feed.name,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),  # first poll right away
            misfire_grace_time=None,
        )

    async def _poll_job(self, name: str) -> None:
        feed = next((f for f in self.settings.feeds if f.name == name and f.enabled), None)
        if self._stop.is_set() or feed is None or self._ctx is None:
            return
        scheduler = self._scheduler
        assert scheduler is not None
        task = asyncio.current_task()
        assert task is not None
        self._polls.add(task)
        try:
            result = await self._backlog.polled(poll_feed(feed, self.matcher, self._ctx))
            if result.hits or result.released:
                self._delivery.wake()
            job = scheduler.get_job(f"feed:{feed.name}")
            if job is not None and result.stopped:
                job.remove()
                self._stopped.add(feed.name)
                log.warning(
                    "feed_stopped feed=%s (no more polls until its URL changes or "
                    "`news-monitor feeds resume %s`)",
                    feed.name,
                    feed.name,
                )
            elif job is not None and result.next_poll is not None:
                # The feed's own schedule: backoff, Retry-After, cache hints; plus jitter.
                jitter = random.uniform(0, self.settings.jitter) if self.settings.jitter else 0
                job.modify(next_run_time=result.next_poll + timedelta(seconds=jitter))
        except asyncio.CancelledError:
            # A stop whose grace ran out (STOP_GRACE): the poll's transaction was not
            # committed, so the next start polls the feed again. Said here, once, rather
            # than as a failed job with a traceback.
            log.info("poll_abandoned feed=%s (stopping; polled again at the next start)", name)
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

    async def _check_files(self) -> None:
        # A coroutine, so APScheduler runs it on the event loop (a plain function would
        # go to a thread pool, away from the store's connection).
        if files_signature(self.settings.files) != self._settings_signature:
            self.reload("files-changed")
        elif rules_signature(self.settings.rules_dir) != self._signature:
            self.reload_rules("files-changed")
        self._resume_cleared()

    def _resume_cleared(self) -> None:
        """Schedule again the stopped feeds whose stop was cleared in the database since
        (`news-monitor feeds resume`, from another process)."""
        if not self._stopped or self._store is None or self._scheduler is None:
            return
        enabled = {f.name: f for f in self.settings.feeds if f.enabled}
        for name in sorted(self._stopped):
            feed = enabled.get(name)
            if feed is None:  # removed or paused: enabling it again schedules it
                self._stopped.discard(name)
                continue
            try:
                stopped = self._store.feed_state(name).disabled
            except StorageError as exc:
                log.warning("feed_state_failed feed=%s error=%s (retried)", name, exc)
                return
            if stopped:
                continue
            self._stopped.discard(name)
            if self._scheduler.get_job(f"feed:{name}") is None:
                log.info("feed_resumed feed=%s (its stop was cleared: polled now)", name)
                self._schedule(feed)

    async def _prune_stories(self, store: Storage) -> None:
        # On the event loop, like the polls: the store's connection is not shared. The
        # loop goes on between steps (a first prune after days can be millions of keys).
        forgotten = 0
        try:
            refresh_vocabulary(store, self.vocabulary)
            before = self.now() - timedelta(seconds=self.settings.story_quiet)
            for step in store.prune_story_index_steps(before):
                forgotten += step
                await asyncio.sleep(0)
        except StorageError as exc:
            log.warning("stories_prune_failed error=%s (retried within the hour)", exc)
        if forgotten:
            log.info("stories_pruned articles=%d (their stories are quiet)", forgotten)

    async def _retention(self, store: Storage) -> None:
        """Retention in short transactions, the event loop free between them (polls,
        deliveries and the watchdog go on while a large database is pruned)."""
        counts: Counter[str] = Counter()
        for step in store.prune_steps(
            self.now(),
            articles=self.settings.keep_articles,
            hits=self.settings.keep_hits,
            quiet=timedelta(seconds=self.settings.story_quiet),
        ):
            counts.update(step)
            await asyncio.sleep(0)
        log.info("pruned %s", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    async def _index_search(self) -> None:
        """The search index brought up to date (see SearchIndexer). A stop waits for
        the round in flight as for a poll (cancelled, it would only stop waiting)."""
        task = asyncio.current_task()
        assert task is not None
        self._polls.add(task)
        try:
            await self._indexer.catch_up()
        except StorageBusy:
            pass  # another process holds the database: the next run goes on
        except StorageError as exc:
            log.warning("search_index_failed error=%s (retried)", exc)
        finally:
            self._polls.discard(task)

    async def _heartbeat(self) -> None:
        """Runs on the scheduler's event loop: proof for /health and the systemd
        watchdog that the loop is not stuck."""
        self.metrics.beat()
        if systemd.watchdog_interval() is not None:
            await systemd.watchdog_ping()

    def _beat_every(self) -> float:
        """Seconds between heartbeats: often enough for the systemd watchdog (half its
        interval is what systemd asks) and for /health."""
        watchdog = systemd.watchdog_interval()
        every = min(10.0, self.settings.metrics_stale_after / 4)
        return min(every, watchdog) if watchdog else every

    async def _gauges(self, store: Storage) -> None:
        """The outbox by state, broken and scheduled feeds (a minute apart: counting the
        outbox reads every delivery row)."""
        self.metrics.outbox(store.delivery_counts())
        polled = {f.name for f in self.settings.feeds if f.enabled}  # not paused ones
        broken = store.broken_feeds(self.settings.health_failures) & polled
        self.metrics.broken_feeds(len(broken))
        jobs = self._scheduler.get_jobs() if self._scheduler is not None else []
        self.metrics.feeds(sum(1 for job in jobs if job.id.startswith("feed:")))

    def _status(self) -> str:
        enabled = sum(1 for f in self.settings.feeds if f.enabled)
        return systemd.status(f"polling {enabled} feeds with {len(self.matcher)} rules")
