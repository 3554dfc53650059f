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
import random
import signal
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Settings
from monitor.deliver import Channel, build_channels, deliver_due
from monitor.errors import ConfigError, ConfigErrors
from monitor.fetch import Fetcher
from monitor.match import Matcher
from monitor.models import Digest, FeedConfig, PendingDelivery
from monitor.parse import ParsePool
from monitor.pipeline import PollContext, in_flight, poll_feed, refresh_vocabulary
from monitor.ruleset import load_rules, resolve_references, rule_files
from monitor.store import Store
from monitor.stories import Vocabulary
from monitor.text import word_frequencies

log = logging.getLogger(__name__)
STOP_GRACE = 10.0
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
    channels, channel_errors = build_channels(settings.channels)
    errors += [ConfigError(message, str(settings.path)) for message in channel_errors]
    if errors:
        raise ConfigErrors(errors)
    return matcher, channels


def rules_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a rule file is edited, added or removed."""
    try:
        files = rule_files(directory)
    except OSError:
        return ()
    out = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


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
        self._polls: set[asyncio.Task[object]] = set()
        self._store: Store | None = None
        #: Word rarity of recent articles, for story clustering; refreshed hourly.
        self.vocabulary = Vocabulary()

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
            self._tell_rules_rejected(errors)
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
        # On the event loop, like the polls: the store's connection is not shared.
        refresh_vocabulary(store, self.vocabulary)
        forgotten = store.prune_story_index(
            self.now() - timedelta(seconds=self.settings.story_quiet)
        )
        if forgotten:
            log.info("stories_pruned articles=%d (their stories are quiet)", forgotten)

    async def _check_rules(self) -> None:
        # A coroutine, so APScheduler runs it on the event loop (a plain function would
        # go to a thread pool, away from the store's connection).
        if rules_signature(self.settings.rules_dir) != self._signature:
            self.reload_rules("files-changed")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        loop.add_signal_handler(signal.SIGHUP, self.reload_rules, "SIGHUP")
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
        )
        ctx = PollContext(
            store=store,
            fetch=fetcher.fetch,
            parse=pool.parse,
            default_channels=self.settings.default_channels,
            now=self.now,
            operator_channels=self.settings.operator_channels,
            health_failures=self.settings.health_failures,
            health_silence=self.settings.health_silence,
            max_backoff=self.settings.fetch_max_backoff,
            slots=in_flight(settings.fetch_total, settings.parse_workers),
            story_quiet=timedelta(seconds=settings.story_quiet),
            vocabulary=self.vocabulary,
            baseline=settings.baseline,
            storm=settings.storm,
        )
        scheduler = AsyncIOScheduler(timezone=UTC)
        feeds = [f for f in self.settings.feeds if f.enabled]
        for feed in feeds:
            scheduler.add_job(
                self._poll_job,
                IntervalTrigger(seconds=feed.interval, jitter=self.settings.jitter or None),
                args=[feed, ctx, scheduler],
                id=f"feed:{feed.name}",
                name=feed.name,
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),  # first poll right away
                misfire_grace_time=None,
            )
        scheduler.add_job(
            self._prune_stories,
            IntervalTrigger(hours=1),
            args=[store],
            id="stories:prune",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self._check_rules,
            IntervalTrigger(seconds=self.settings.reload_interval),
            id="rules:reload",
            max_instances=1,
            coalesce=True,
        )
        log.info(
            "started feeds=%d rules=%d channels=%d database=%s",
            len(feeds),
            len(self.matcher),
            len(self.channels),
            self.settings.database,
        )
        await self._prune_stories(store)  # and word rarity for clustering, before any poll
        scheduler.start()
        # One delivery loop per channel, so a slow or dead channel (SMTP throttling, a
        # timeout) never holds up the others; one more for rows of unknown channels.
        delivery = [
            asyncio.create_task(self._delivery_loop(store, {name: channel}, name))
            for name, channel in self.channels.items()
        ]
        delivery.append(asyncio.create_task(self._delivery_loop(store, {}, None)))
        try:
            await self._stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self._finish_polls()
            # After the polls: closing kills the workers, so no parse is cut short.
            await asyncio.to_thread(pool.close)
            # A send in flight is finished and recorded (a send cut off here would go
            # out again after the restart); the loops stop before their next one.
            _, unfinished = await asyncio.wait(delivery, timeout=STOP_GRACE)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*delivery, return_exceptions=True)
            await fetcher.aclose()
            store.close()
            self._store = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("stopped")
        return 0

    async def _poll_job(self, feed: FeedConfig, ctx: PollContext, scheduler: Any) -> None:
        if self._stop.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self._polls.add(task)
        try:
            result = await poll_feed(feed, self.matcher, ctx)
            if result.hits:
                self._wake_delivery()
            job = scheduler.get_job(f"feed:{feed.name}")
            if job is not None and result.stopped:
                job.remove()
                log.warning("feed_stopped feed=%s (no more polls until its URL changes)", feed.name)
            elif job is not None and result.next_poll is not None:
                # The feed's own schedule: backoff, Retry-After, cache hints; plus jitter.
                jitter = random.uniform(0, self.settings.jitter) if self.settings.jitter else 0
                job.modify(next_run_time=result.next_poll + timedelta(seconds=jitter))
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

    async def _delivery_loop(
        self, store: Store, channels: dict[str, Channel], only: str | None
    ) -> None:
        """Send due deliveries of one channel (``only``), or of channels no longer configured
        (``only`` None), until stopped. Woken early when a poll stores new hits."""
        configured = tuple(self.channels)
        wake = asyncio.Event()
        self._wakes.add(wake)
        try:
            while not self._stop.is_set():
                wake.clear()  # before sending: hits stored meanwhile set it again
                try:
                    await deliver_due(
                        store,
                        channels,
                        self.now,
                        policies=self.matcher.policies,
                        retry_min=self.settings.retry_min,
                        retry_max=self.settings.retry_max,
                        max_age=self.settings.delivery_max_age,
                        only=(only,) if only is not None else None,
                        exclude=() if only is not None else configured,
                        on_dead=self._tell_dead,
                        stopping=self._stop.is_set,
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

    def _tell_rules_rejected(self, errors: list[ConfigError]) -> None:
        if self._store is None or not self.settings.operator_channels:
            return
        shown = "\n".join(f"- {e}" for e in errors[:10])
        more = f"\n(+{len(errors) - 10} more)" if len(errors) > 10 else ""
        self._store.add_notice(
            "rules-rejected",
            str(self.settings.rules_dir),
            f"rule edit rejected: {len(errors)} error(s), the previous rules keep running",
            f"The edited rules in {self.settings.rules_dir} were not loaded:\n{shown}{more}\n"
            "Fix the files (`news-monitor check` lists the errors); they are reloaded when "
            "saved.",
            self.settings.operator_channels,
            self.now(),
        )
        self._wake_delivery()

    def _wake_delivery(self) -> None:
        for wake in self._wakes:
            wake.set()
