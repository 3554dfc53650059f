"""The settings file (YAML) -> a typed, validated :class:`Settings`. Every error at once.

Paths in the file are relative to the file's own directory. :func:`load_settings` reads
the file in steps (the feeds, the channels, the sections with checked values, the plain
values); the values themselves are read by :class:`~monitor.config.reader.Reader`, which
collects the errors, so that one run lists all of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from monitor.config.channels import read_channels
from monitor.config.feeds import read_feeds
from monitor.config.reader import Reader
from monitor.config.values import parse_size
from monitor.config.yamlfile import YamlList, YamlMap, load_yaml
from monitor.errors import ConfigError, ConfigErrors
from monitor.models import ChannelConfig, FeedConfig

TOP_KEYS = (
    "database",
    "rules_dir",
    "feeds",
    "feeds_from",
    "channels",
    "default_channels",
    "fetch",
    "delivery",
    "reload_interval",
    "operator_channels",
    "health",
    "parse",
    "stories",
    "retention",
    "metrics",
)
RETENTION_KEYS = ("articles", "hits")
METRICS_KEYS = ("listen", "stale_after")
HEALTH_KEYS = ("failures", "silence")
PARSE_KEYS = ("workers", "deadline", "memory_limit", "nice")
#: How much lower the parse workers' CPU priority is than the daemon's (monitor.parse):
#: none on one CPU, where a parse would otherwise wait out the whole of a busy loop.
PARSE_NICE = 10 if (os.cpu_count() or 1) > 1 else 0
STORIES_KEYS = ("quiet",)
FETCH_KEYS = (
    "timeout",
    "jitter",
    "user_agent",
    "allow_private",
    "max_bytes",
    "max_redirects",
    "per_host",
    "total",
    "retry_after_cap",
    "max_backoff",
)
DELIVERY_KEYS = ("interval", "retry_min", "retry_max", "max_age", "storm", "baseline")
_MEMORY_LIMIT = 512 * 2**20
_MAX_BYTES = 15 * 2**20


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs from the settings file."""

    #: The file these settings came from.
    path: Path
    database: Path
    rules_dir: Path
    feeds: tuple[FeedConfig, ...]
    channels: tuple[ChannelConfig, ...]
    #: Channels alerted by rules that name none.
    default_channels: tuple[str, ...]
    #: Total seconds one fetch may take.
    fetch_timeout: float = 30.0
    #: Networks (CIDR) and host names that may be fetched although not public (SSRF).
    fetch_allow_private: tuple[str, ...] = ()
    #: Largest decoded body accepted from a feed.
    fetch_max_bytes: int = _MAX_BYTES
    fetch_max_redirects: int = 10
    #: Concurrent requests per host, and in all.
    fetch_per_host: int = 2
    fetch_total: int = 20
    #: The longest Retry-After window honoured.
    fetch_retry_after_cap: float = 31 * 86400.0
    #: The longest wait between polls of a failing feed.
    fetch_max_backoff: float = 6 * 3600.0
    #: Worker processes that parse feeds, each with a deadline and a memory cap.
    parse_workers: int = 2
    parse_deadline: float = 20.0
    parse_memory_limit: int | None = _MEMORY_LIMIT
    #: How much lower the workers' CPU priority is than the daemon's (nice increment).
    parse_nice: int = PARSE_NICE
    #: Up to this many seconds are added at random to each feed's interval.
    jitter: float = 5.0
    user_agent: str = ""
    #: How often the delivery loop looks for pending alerts when nothing wakes it.
    delivery_interval: float = 5.0
    #: First retry delay of a failed delivery; doubles per attempt up to retry_max.
    retry_min: float = 30.0
    retry_max: float = 3600.0
    #: A delivery still failing this long after it was queued is given up (dead) and the
    #: operator is told.
    delivery_max_age: float = 2 * 86400.0
    #: More alerts than this for one channel from one poll become one summary (0: no cap).
    storm: int = 25
    #: A new feed's first poll stores its backlog without alerting it (per feed: baseline).
    baseline: bool = True
    #: How often the daemon looks for changed rule files (SIGHUP reloads at once).
    reload_interval: float = 5.0
    #: Channels told about the daemon itself: failing, silent, stopped feeds.
    operator_channels: tuple[str, ...] = ()
    #: Consecutive failures of a feed before the operator is told (once).
    health_failures: int = 5
    #: Default period without new articles before the operator is told; 0 = never.
    health_silence: float = 0.0
    #: A story with no new article for this long is closed: later articles start anew.
    story_quiet: float = 2 * 86400.0
    #: Retention: articles without hits, and hits, are deleted after this long.
    keep_articles: float = 30 * 86400.0
    keep_hits: float = 365 * 86400.0
    #: The files the settings were read from (this one and its feeds_from files).
    files: tuple[Path, ...] = ()
    #: Where Prometheus metrics and /health are served ("127.0.0.1:9464"); None: off.
    metrics_listen: tuple[str, int] | None = None
    #: /health fails when the scheduler loop has not run for this long.
    metrics_stale_after: float = 120.0

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)


def load_settings(path: Path, env: Mapping[str, str], *, secrets: bool = True) -> Settings:
    """Read and validate the settings file; raise :class:`ConfigErrors` listing every problem.

    ``secrets`` False: unset environment variables and credentials become empty instead
    of errors, for commands that never send (the daemon's secrets stay the daemon's)."""
    data = _settings_mapping(path)
    reader = Reader(path, env, secrets)
    reader.unknown(data, TOP_KEYS, "the settings file")
    base = path.parent
    database = base / (reader.string(data, "database") or "news-monitor.db")
    rules_dir = base / (reader.string(data, "rules_dir") or "rules")
    feeds, feed_files = read_feeds(reader, data)
    channels = read_channels(reader, data)
    names = {c.name for c in channels}
    settings = Settings(
        path=path,
        database=database,
        rules_dir=rules_dir,
        feeds=tuple(feeds),
        channels=tuple(channels),
        default_channels=reader.channel_list(data, "default_channels", "default channel", names),
        operator_channels=reader.channel_list(data, "operator_channels", "operator channel", names),
        files=(path, *feed_files),
    )
    # Two steps, the checked values before the plain ones, so that the errors are listed
    # in the order they always were.
    settings, sections = _read_checked(reader, data, settings)
    settings = _read_plain(reader, data, sections, settings)
    if reader.errors:
        raise ConfigErrors(reader.errors)
    return settings


def _settings_mapping(path: Path) -> YamlMap:
    """The settings file as a mapping; a file that is not one is the only error."""
    try:
        data = load_yaml(path)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from exc
    if not isinstance(data, YamlMap):
        raise ConfigErrors(
            [
                ConfigError(
                    "the settings file must be a mapping "
                    "(database:, rules_dir:, feeds:, channels:)",
                    str(path),
                    1,
                )
            ]
        )
    return data


class _Sections(NamedTuple):
    """The sections of the settings file whose plain values are read last."""

    health: YamlMap
    parse: YamlMap
    fetch: YamlMap
    delivery: YamlMap
    stories: YamlMap
    metrics: YamlMap


def _read_checked(reader: Reader, data: YamlMap, settings: Settings) -> tuple[Settings, _Sections]:
    """Each section (its unknown keys reported) and the values in it that take more than
    a plain read: ``settings`` with those, and the sections."""
    health = reader.section(data, "health", HEALTH_KEYS)
    failures = _health_failures(reader, health)
    parse = reader.section(data, "parse", PARSE_KEYS)
    memory_limit = _memory_limit(reader, parse)
    fetch = reader.section(data, "fetch", FETCH_KEYS)
    allow_private = _allow_private(reader, fetch)
    max_bytes = _max_bytes(reader, fetch)
    delivery = reader.section(data, "delivery", DELIVERY_KEYS)
    stories = reader.section(data, "stories", STORIES_KEYS)
    retention = reader.section(data, "retention", RETENTION_KEYS)
    keep_articles, keep_hits = _retention(reader, retention)
    metrics = reader.section(data, "metrics", METRICS_KEYS)
    settings = replace(
        settings,
        health_failures=failures,
        parse_memory_limit=memory_limit,
        fetch_allow_private=allow_private,
        fetch_max_bytes=max_bytes,
        keep_articles=keep_articles,
        keep_hits=keep_hits,
        metrics_listen=_metrics_listen(reader, metrics),
    )
    return settings, _Sections(health, parse, fetch, delivery, stories, metrics)


def _read_plain(reader: Reader, data: YamlMap, sections: _Sections, settings: Settings) -> Settings:
    """``settings`` with the durations, counts and flags that need no more than a read."""
    fetch, parse, delivery = sections.fetch, sections.parse, sections.delivery
    return replace(
        settings,
        fetch_timeout=reader.duration(fetch, "timeout", 30.0, 0.1),
        jitter=reader.duration(fetch, "jitter", 5.0, 0.0),
        user_agent=reader.string(fetch, "user_agent", "") or "",
        fetch_max_redirects=reader.count(fetch, "max_redirects", 10, 0),
        fetch_per_host=reader.count(fetch, "per_host", 2, 1),
        fetch_total=reader.count(fetch, "total", 20, 1),
        fetch_retry_after_cap=reader.duration(fetch, "retry_after_cap", 31 * 86400.0, 0.0),
        fetch_max_backoff=reader.duration(fetch, "max_backoff", 6 * 3600.0, 1.0),
        parse_workers=reader.count(parse, "workers", 2, 1),
        parse_deadline=reader.duration(parse, "deadline", 20.0, 1.0),
        parse_nice=reader.count(parse, "nice", PARSE_NICE, 0, maximum=19),
        delivery_interval=reader.duration(delivery, "interval", 5.0, 0.05),
        retry_min=reader.duration(delivery, "retry_min", 30.0, 0.0),
        retry_max=reader.duration(delivery, "retry_max", 3600.0, 0.0),
        delivery_max_age=reader.duration(delivery, "max_age", 2 * 86400.0, 60.0),
        storm=reader.count(delivery, "storm", 25, 0),
        baseline=reader.flag(delivery, "baseline", True),
        reload_interval=reader.duration(data, "reload_interval", 5.0, 0.1),
        health_silence=reader.duration(sections.health, "silence", 0.0, 0.0),
        story_quiet=reader.duration(sections.stories, "quiet", 2 * 86400.0, 60.0),
        metrics_stale_after=reader.duration(sections.metrics, "stale_after", 120.0, 5.0),
    )


def _health_failures(reader: Reader, health: YamlMap) -> int:
    failures = health.get("failures", 5)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        reader.error("`failures` must be a whole number, 1 or more", health.pos("failures"))
        return 5
    return failures


def _memory_limit(reader: Reader, parse: YamlMap) -> int | None:
    """`parse.memory_limit`: a size of at least 128MiB, or 0 (none) for no cap."""
    if "memory_limit" not in parse:
        return _MEMORY_LIMIT
    raw_limit = parse["memory_limit"]
    if raw_limit in (0, None, "none"):
        return None
    memory_limit = parse_size(raw_limit)
    if memory_limit is None:
        reader.error(
            f"`memory_limit` must be a size such as 512MiB or 1GiB (or 0 for no cap); "
            f"got {raw_limit!r}",
            parse.pos("memory_limit"),
        )
        return _MEMORY_LIMIT
    if memory_limit < 128 * 2**20:
        reader.error(
            "`memory_limit` must be a size of at least 128MiB (or 0 for no cap)",
            parse.pos("memory_limit"),
        )
        return _MEMORY_LIMIT
    return memory_limit


def _allow_private(reader: Reader, fetch: YamlMap) -> tuple[str, ...]:
    """`fetch.allow_private`: networks and host names, each located in its own error."""
    allow_private = reader.names(fetch, "allow_private")
    for index, entry in enumerate(allow_private):
        if not _valid_allow_entry(entry):
            listed = fetch.get("allow_private")
            pos = listed.pos(index) if isinstance(listed, YamlList) else fetch.pos("allow_private")
            reader.error(
                f"`allow_private` entry {entry!r} is neither a network (127.0.0.0/8, ::1) nor "
                "a host name",
                pos,
            )
    return allow_private


def _valid_allow_entry(entry: str) -> bool:
    from monitor.fetch import AddressPolicy  # the fetch stage owns the rule

    try:
        AddressPolicy([entry])
    except ValueError:
        return False
    return True


def _max_bytes(reader: Reader, fetch: YamlMap) -> int:
    max_bytes = parse_size(fetch.get("max_bytes", _MAX_BYTES))
    if max_bytes is None or max_bytes < 1024:
        reader.error(
            "`max_bytes` must be a size such as 15MiB (at least 1KiB)", fetch.pos("max_bytes")
        )
        return _MAX_BYTES
    return max_bytes


def _retention(reader: Reader, retention: YamlMap) -> tuple[float, float]:
    """How long articles without hits, and hits, are kept (hits at least as long)."""
    keep_articles = reader.duration(retention, "articles", 30 * 86400.0, 86400.0)
    keep_hits = reader.duration(retention, "hits", 365 * 86400.0, 86400.0)
    if keep_hits < keep_articles:
        reader.error(
            "`retention.hits` must be at least `retention.articles` (hits are kept longer)",
            retention.pos("hits"),
        )
    return keep_articles, keep_hits


def _metrics_listen(reader: Reader, metrics: YamlMap) -> tuple[str, int] | None:
    if metrics.get("listen") in (None, False, ""):
        return None
    from monitor.metrics import parse_listen

    listen = parse_listen(str(metrics["listen"]))
    if listen is None:
        reader.error(
            "`metrics.listen` must be host:port, such as 127.0.0.1:9464",
            metrics.pos("listen"),
        )
    return listen
