"""The long-running process: scheduler, delivery loop, signals. apscheduler lives here.

One asyncio event loop runs everything:

* one APScheduler job per enabled feed (interval + jitter, ``max_instances=1``,
  ``coalesce=True``), each calling :func:`monitor.pipeline.poll_feed`;
* a delivery loop of its own that sends pending alerts, woken right after a poll stores
  new hits and otherwise every ``delivery.interval``.

SIGTERM / SIGINT: no new polls start; a poll in flight gets ``STOP_GRACE`` seconds to
finish, then is cancelled (its transaction was not committed, so the next start redoes
it); a send in flight is finished and recorded (within the same grace), pending
deliveries stay in the database for the next start. Exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import systemd
from monitor.config import Settings, load_settings
from monitor.deliver import Channel, build_channels, deliver_due
from monitor.errors import ConfigError, ConfigErrors, StorageBusy, StorageError
from monitor.fetch import Fetcher
from monitor.match import Matcher, load_rules, resolve_references, rule_files
from monitor.metrics import Metrics
from monitor.metrics import serve as serve_metrics
from monitor.models import Digest, FeedConfig, PendingDelivery
from monitor.parse import ParsePool
from monitor.pipeline import (
    Backlog,
    PollContext,
    in_flight,
    poll_feed,
    refresh_vocabulary,
)
from monitor.store import Store
from monitor.stories import Vocabulary
from monitor.text import word_frequencies

log = logging.getLogger(__name__)
STOP_GRACE = 10.0
#: The first retention run comes this long after the start.
RETENTION_DELAY = timedelta(minutes=5)
#: Seconds systemd is asked to wait for a start that upgrades the database first.
UPGRADE_TIMEOUT = 600.0
#: Seconds between search index updates (each adds what was stored since).
INDEX_EVERY = 2.0
#: Settings that a reload cannot change in a running daemon (they need a restart).
RESTART_ONLY = (
    "database",
    "fetch_timeout",
    "fetch_allow_private",
    "fetch_max_bytes",
    "fetch_max_redirects",
    "fetch_per_host",
    "fetch_total",
    "fetch_retry_after_cap",
    "user_agent",
    "parse_workers",
    "parse_deadline",
    "parse_memory_limit",
    "parse_nice",
    "metrics_listen",
    "metrics_stale_after",
    "reload_interval",
)
#: Recent articles sampled for word frequencies, and the fewest worth using.
FREQUENCY_SAMPLE = 2000
FREQUENCY_MINIMUM = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


def load_matcher(
    settings: Settings, frequencies: Mapping[str, float] | None = None
) -> tuple[Matcher, list[ConfigError]]:
    """The rules of ``settings.rules_dir`` compiled, or the errors that prevent it.

    ``frequencies`` (word -> share of recent articles) lets the matcher index each rule
    by its rarest terms."""
    ruleset = load_rules(settings.rules_dir)
    rules, errors = resolve_references(
        ruleset.rules,
        {f.name: f.tags for f in settings.feeds},
        {c.name: c.tags for c in settings.channels},
    )
    errors = list(ruleset.errors) + errors
    if errors:
        return Matcher(()), errors
    try:
        return Matcher(rules, frequencies), []
    except ValueError as exc:  # a phrase with too many word forms
        return Matcher(()), [ConfigError(str(exc), str(settings.rules_dir))]


def validate(settings: Settings) -> tuple[Matcher, dict[str, Channel]]:
    """Load rules and build channels; raise ConfigErrors listing every problem."""
    matcher, errors = load_matcher(settings)
    channels, channel_errors = settings_channels(settings)
    errors += channel_errors
    if errors:
        raise ConfigErrors(errors)
    return matcher, channels


def settings_channels(settings: Settings) -> tuple[dict[str, Channel], list[ConfigError]]:
    """The settings' channels built, and an error naming the file and line of each one
    apprise cannot use."""
    channels: dict[str, Channel] = {}
    errors: list[ConfigError] = []
    for config in settings.channels:
        built, messages = build_channels((config,))
        channels.update(built)
        errors += [ConfigError(m, str(settings.path), *config.pos) for m in messages]
    return channels, errors


def files_signature(paths: Sequence[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when one of ``paths`` is edited."""
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), 0, -1, 0))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def rules_signature(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a rule file is edited, added or removed."""
    try:
        return files_signature(rule_files(directory))
    except OSError:
        return ()


def announce_upgrade(database: Path) -> bool:
    """If opening ``database`` will migrate it, say so in the log and to systemd, and ask
    for UPGRADE_TIMEOUT more to start (a large database's first start after an upgrade
    can outlast the default start timeout of 90 s). True if it will."""
    if not Store.upgrade_pending(database):
        return False
    log.info("database_upgrade path=%s (the first start after an upgrade takes longer)", database)
    systemd.notify(
        f"EXTEND_TIMEOUT_USEC={int(UPGRADE_TIMEOUT * 1_000_000)}",
        systemd.status("upgrading the database"),
    )
    return True


class SearchIndexer:
    """Keeps the search index up to date (Store.catch_up_search) from a thread of its own
    with its own connection: FTS5 tokenising runs in SQLite, which lets go of the GIL,
    so it uses another core instead of the poll loop's time. After each round it also
    copies the write-ahead log back into the database file as far as it can without
    waiting (a passive checkpoint), so that the poll loop's commits rarely have to
    (see monitor.store.CHECKPOINT_PAGES)."""

    def __init__(self, database: Path) -> None:
        self._database = database
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-index")
        self._store: Store | None = None  # made and used on the thread only
        self._closing = threading.Event()

    async def catch_up(self) -> int:
        """Index what was stored since; how many articles that was."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._catch_up)

    def _catch_up(self) -> int:
        if self._store is None:
            self._store = Store(self._database)
        added = self._store.catch_up_search(stop=self._closing.is_set)
        self._store.checkpoint()
        return added

    def request_stop(self) -> None:
        """Make the round in flight end after the batch being indexed (the rest waits
        for the next start), so that a stop does not wait for a whole backlog."""
        self._closing.set()

    async def close(self) -> None:
        """Stop after the batch being indexed, and close the connection."""
        self._closing.set()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


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
        self._signature = rules_signature(settings.rules_dir)
        self.matcher, self.channels = validate(settings)
        self._stop = asyncio.Event()
        #: One event per delivery loop: set to make it look for new deliveries now.
        self._wakes: set[asyncio.Event] = set()
        #: Polls in flight, and the search index round if one is: a stop waits for them.
        self._polls: set[asyncio.Task[object]] = set()
        #: Story clustering of first polls' backlogs, between polls.
        self._backlog = Backlog()
        self._store: Store | None = None
        self._indexer = SearchIndexer(settings.database)
        #: Word rarity of recent articles, for story clustering; refreshed hourly.
        self.vocabulary = Vocabulary()
        self.metrics = Metrics()
        self._settings_signature = files_signature(settings.files)
        self._ctx: PollContext | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._deliveries: dict[str | None, asyncio.Task[None]] = {}
        #: Feeds no longer scheduled because they answered 410 Gone: polled again when
        #: their stop is cleared (`news-monitor feeds resume`; see _resume_cleared).
        self._stopped: set[str] = set()

    def request_stop(self, reason: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("stopping reason=%s", reason)
            self._stop.set()
            self._wake_delivery()

    def reload_rules(self, reason: str = "change") -> bool:
        """Load the rules again; keep the running ones if the new ones have errors."""
        self._signature = rules_signature(self.settings.rules_dir)
        matcher, errors = load_matcher(self.settings, self._frequencies())
        if errors:
            for error in errors:
                log.error("rules_rejected %s", error)
            log.error(
                "rules_reload_failed reason=%s errors=%d keeping=%d rules (fix the files; "
                "`news-monitor check` lists the errors)",
                reason,
                len(errors),
                len(self.matcher),
            )
            self._tell_rejected("rules", str(self.settings.rules_dir), errors)
            return False
        old = {r.name: r.version for r in self.matcher.rules}
        new = {r.name: r.version for r in matcher.rules}
        self.matcher = matcher
        if self._store is not None:
            self._store.record_rules(matcher.rules, self.now())
        log.info(
            "rules_reloaded reason=%s rules=%d added=%s removed=%s changed=%s",
            reason,
            len(new),
            ",".join(sorted(new.keys() - old.keys())) or "-",
            ",".join(sorted(old.keys() - new.keys())) or "-",
            ",".join(sorted(n for n in new.keys() & old.keys() if new[n] != old[n])) or "-",
        )
        return True

    def _frequencies(self) -> dict[str, float] | None:
        """Word frequencies of recent stored articles, once there are enough of them."""
        if self._store is None:
            return None
        texts = self._store.recent_texts(FREQUENCY_SAMPLE)
        return word_frequencies(texts) if len(texts) >= FREQUENCY_MINIMUM else None

    async def _prune_stories(self, store: Store) -> None:
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
                stopped = self._store.feed_state(name)["disabled"]
            except (StorageError, sqlite3.Error) as exc:
                log.warning("feed_state_failed feed=%s error=%s (retried)", name, exc)
                return
            if stopped:
                continue
            self._stopped.discard(name)
            if self._scheduler.get_job(f"feed:{name}") is None:
                log.info("feed_resumed feed=%s (its stop was cleared: polled now)", name)
                self._schedule(feed)

    def reload(self, reason: str = "SIGHUP") -> None:
        """Read the settings file again and apply what can change while running (feeds,
        channels, routing, alert and health settings), then the rules. Settings with
        errors are refused: the running ones stay, and the operator is told."""
        systemd.reloading()
        self._settings_signature = files_signature(self.settings.files)
        try:
            new = load_settings(self.settings.path, os.environ)
            channels, channel_errors = settings_channels(new)
            if channel_errors:
                raise ConfigErrors(channel_errors)
        except ConfigErrors as exc:
            for error in exc.errors:
                log.error("settings_rejected %s", error)
            log.error(
                "settings_reload_failed reason=%s errors=%d (the running settings stay; "
                "`news-monitor check` lists the errors)",
                reason,
                len(exc.errors),
            )
            self._tell_rejected("settings", str(self.settings.path), list(exc.errors))
        else:
            self._apply(new, channels)
        self.reload_rules(reason)
        self._resume_cleared()
        systemd.notify("READY=1", self._status())

    def _apply(self, new: Settings, channels: dict[str, Channel]) -> None:
        old = self.settings
        fixed = {key: getattr(old, key) for key in RESTART_ONLY}
        ignored = sorted(k for k, v in fixed.items() if getattr(new, k) != v)
        if ignored:
            log.warning(
                "settings_need_restart keys=%s (they apply at the next start)", ",".join(ignored)
            )
        self.settings = replace(new, **fixed)
        self._settings_signature = files_signature(self.settings.files)
        self.channels = channels
        before = {f.name: f for f in old.feeds if f.enabled}
        after = {f.name: f for f in self.settings.feeds if f.enabled}
        if self._ctx is not None:
            self._ctx = self._context(self._ctx)
        if self._scheduler is not None:
            for name in before.keys() - after.keys():
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(f"feed:{name}")
            for name, feed in after.items():
                if before.get(name) != feed:
                    with contextlib.suppress(JobLookupError):
                        self._scheduler.remove_job(f"feed:{name}")
                    self._schedule(feed)
        self._start_delivery_loops()
        log.info(
            "settings_reloaded feeds=%d added=%s removed=%s changed=%s channels=%d",
            len(after),
            ",".join(sorted(after.keys() - before.keys())) or "-",
            ",".join(sorted(before.keys() - after.keys())) or "-",
            ",".join(sorted(n for n in after.keys() & before.keys() if after[n] != before[n]))
            or "-",
            len(channels),
        )

    def _context(self, base: PollContext) -> PollContext:
        """The poll context with the settings that may change while running."""
        settings = self.settings
        return replace(
            base,
            default_channels=settings.default_channels,
            operator_channels=settings.operator_channels,
            health_failures=settings.health_failures,
            health_silence=settings.health_silence,
            max_backoff=settings.fetch_max_backoff,
            story_quiet=timedelta(seconds=settings.story_quiet),
            baseline=settings.baseline,
            storm=settings.storm,
        )

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

    def _status(self) -> str:
        enabled = sum(1 for f in self.settings.feeds if f.enabled)
        return systemd.status(f"polling {enabled} feeds with {len(self.matcher)} rules")

    async def _retention(self, store: Store) -> None:
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

    async def _gauges(self, store: Store) -> None:
        """The outbox by state, broken and scheduled feeds (a minute apart: counting the
        outbox reads every delivery row)."""
        self.metrics.outbox(store.delivery_counts())
        polled = {f.name for f in self.settings.feeds if f.enabled}  # not paused ones
        broken = store.broken_feeds(self.settings.health_failures) & polled
        self.metrics.broken_feeds(len(broken))
        jobs = self._scheduler.get_jobs() if self._scheduler is not None else []
        self.metrics.feeds(sum(1 for job in jobs if job.id.startswith("feed:")))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        loop.add_signal_handler(signal.SIGHUP, self.reload, "SIGHUP")
        announce_upgrade(self.settings.database)
        store = self._store = Store(self.settings.database)
        if (frequencies := self._frequencies()) is not None:
            # Recompile with what the stored articles say about word frequencies.
            self.matcher, _ = load_matcher(self.settings, frequencies)
        store.record_rules(self.matcher.rules, self.now())
        settings = self.settings
        fetcher = Fetcher(
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
        pool = ParsePool(
            settings.parse_workers,
            deadline=settings.parse_deadline,
            memory_limit=settings.parse_memory_limit,
            nice=settings.parse_nice,
        )
        server = None
        if settings.metrics_listen is not None:
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
        self._ctx = self._context(
            PollContext(
                store=store,
                fetch=fetcher.fetch,
                parse=pool.parse,
                parse_matched=pool.parse_matched,
                default_channels=(),
                now=self.now,
                slots=in_flight(settings.fetch_total, settings.parse_workers),
                vocabulary=self.vocabulary,
                metrics=self.metrics,
            )
        )
        scheduler = self._scheduler = AsyncIOScheduler(timezone=UTC)
        for feed in settings.feeds:
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
            (self._check_files, IntervalTrigger(seconds=settings.reload_interval), [], "reload"),
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
        log.info(
            "started feeds=%d rules=%d channels=%d database=%s",
            sum(1 for f in settings.feeds if f.enabled),
            len(self.matcher),
            len(self.channels),
            settings.database,
        )
        await self._prune_stories(store)  # and word rarity for clustering, before any poll
        scheduler.start()
        clustering = asyncio.create_task(
            self._backlog.run(
                lambda: self._ctx, lambda: self.matcher.policies, self._wake_delivery, self._stop
            )
        )
        self._start_delivery_loops()
        await self._heartbeat()
        await self._gauges(store)
        systemd.notify("READY=1", self._status())
        try:
            await self._stop.wait()
        finally:
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
            # A send in flight is finished and recorded (a send cut off here would go
            # out again after the restart); the loops stop before their next one.
            delivery = list(self._deliveries.values())
            _, unfinished = await asyncio.wait(delivery, timeout=STOP_GRACE)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*delivery, return_exceptions=True)
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

    def _beat_every(self) -> float:
        """Seconds between heartbeats: often enough for the systemd watchdog (half its
        interval is what systemd asks) and for /health."""
        watchdog = systemd.watchdog_interval()
        every = min(10.0, self.settings.metrics_stale_after / 4)
        return min(every, watchdog) if watchdog else every

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
                self._wake_delivery()
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

    def _start_delivery_loops(self) -> None:
        """One delivery loop per channel, so a slow or dead channel (SMTP throttling, a
        timeout) never holds up the others; one more (key None) for rows of channels no
        longer configured. A loop whose channel is removed ends by itself."""
        assert self._store is not None
        for name in [*self.channels, None]:
            task = self._deliveries.get(name)
            if task is None or task.done():
                self._deliveries[name] = asyncio.create_task(self._delivery_loop(self._store, name))

    async def _delivery_loop(self, store: Store, only: str | None) -> None:
        """Send due deliveries of the channel ``only``, or of channels not configured
        (``only`` None), until stopped or the channel is removed. Woken early when a
        poll stores new hits. Reads the channels at every round: a reload applies."""
        wake = asyncio.Event()
        self._wakes.add(wake)
        try:
            while not self._stop.is_set():
                if only is not None and only not in self.channels:
                    return  # removed by a reload: its rows go to the loop of unknown ones
                wake.clear()  # before sending: hits stored meanwhile set it again
                try:
                    await deliver_due(
                        store,
                        {only: self.channels[only]} if only is not None else {},
                        self.now,
                        policies=self.matcher.policies,
                        retry_min=self.settings.retry_min,
                        retry_max=self.settings.retry_max,
                        max_age=self.settings.delivery_max_age,
                        only=(only,) if only is not None else None,
                        exclude=() if only is not None else tuple(self.channels),
                        on_dead=self._tell_dead,
                        stopping=self._stop.is_set,
                        metrics=self.metrics,
                    )
                except Exception:
                    log.exception("delivery_loop_error channel=%s", only)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.settings.delivery_interval)
        finally:
            self._wakes.discard(wake)

    def _tell_dead(self, delivery: PendingDelivery | Digest, error: str) -> None:
        """Tell the operator channels that a delivery was given up (not for a system
        notice: one about a dead notice would die the same way)."""
        if self._store is None or not self.settings.operator_channels:
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
            self.settings.operator_channels,
            self.now(),
        )
        self._wake_delivery()

    def _tell_rejected(self, what: str, where: str, errors: list[ConfigError]) -> None:
        """Tell the operator channels that an edit of the rules or settings was refused."""
        if self._store is None or not self.settings.operator_channels:
            return
        shown = "\n".join(f"- {e}" for e in errors[:10])
        more = f"\n(+{len(errors) - 10} more)" if len(errors) > 10 else ""
        self._store.add_notice(
            f"{what}-rejected",
            where,
            f"{what} edit rejected: {len(errors)} error(s), the previous {what} keep running",
            f"The edited {what} in {where} were not loaded:\n{shown}{more}\n"
            "Fix the files (`news-monitor check` lists the errors); they are reloaded when "
            "saved.",
            self.settings.operator_channels,
            self.now(),
        )
        self._wake_delivery()

    def _wake_delivery(self) -> None:
        for wake in self._wakes:
            wake.set()
