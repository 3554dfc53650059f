"""What a running daemon does when its files are edited (SIGHUP, or an edit noticed
every reload.interval): the settings and the rules loaded again and applied, or refused
with every error while the running ones stay, and the operator told of a refusal."""

from __future__ import annotations

import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import systemd
from monitor.config import Settings, load_settings
from monitor.daemon.delivery import DeliveryLoops
from monitor.daemon.loading import load_matcher, settings_channels
from monitor.deliver import Channel
from monitor.errors import ConfigError, ConfigErrors
from monitor.match import Matcher, rule_files
from monitor.models import FeedConfig
from monitor.pipeline import PollContext
from monitor.store.interface import Storage
from monitor.text import word_frequencies

# The package's name, for every module of it: the daemon's log lines keep one logger.
log = logging.getLogger(__package__)

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

Signature = tuple[tuple[str, int, int, int], ...]


def files_signature(paths: Sequence[Path]) -> Signature:
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


def rules_signature(directory: Path) -> Signature:
    """What changes when a rule file is edited, added or removed."""
    try:
        return files_signature(rule_files(directory))
    except OSError:
        return ()


class Reloading(ABC):
    """The reload side of :class:`monitor.daemon.process.Daemon`, as its base class. A
    reload replaces the daemon's settings, channels, rules and poll context and
    reschedules its feeds, so it works on the daemon's state (declared here, set up by
    the daemon) and calls back into the daemon through the abstract methods."""

    settings: Settings
    channels: dict[str, Channel]
    matcher: Matcher
    now: Callable[[], datetime]
    _store: Storage | None
    _ctx: PollContext | None
    _scheduler: AsyncIOScheduler | None
    _delivery: DeliveryLoops
    #: The rule files and the settings files as last loaded (see _check_files).
    _signature: Signature
    _settings_signature: Signature

    @abstractmethod
    def _schedule(self, feed: FeedConfig) -> None:
        """Add the poll job of ``feed``."""

    @abstractmethod
    def _resume_cleared(self) -> None:
        """Schedule again the stopped feeds whose stop was cleared."""

    @abstractmethod
    def _status(self) -> str:
        """The status line for systemd."""

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
        assert self._store is not None
        self._delivery.start(self._store)
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
        self._delivery.wake()
