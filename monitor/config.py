"""The settings file (YAML) -> a typed, validated :class:`Settings`. Every error at once.

Paths in the file are relative to the file's own directory. Any string may use
``${NAME}`` or ``${NAME:-default}`` to take a value from the environment, which is how
secrets (SMTP passwords, chat tokens) stay out of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from monitor.deliver.render_templates import check_template
from monitor.errors import ConfigError, ConfigErrors
from monitor.models import ChannelConfig, FeedConfig, Template
from monitor.schedule import cron_error, parse_quiet_hours, zone
from monitor.yamlfile import YamlList, YamlMap, load_yaml

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
FEED_KEYS = ("name", "url", "interval", "enabled", "tags", "silence", "baseline")
HEALTH_KEYS = ("failures", "silence")
PARSE_KEYS = ("workers", "deadline", "memory_limit", "nice")
#: How much lower the parse workers' CPU priority is than the daemon's (monitor.parse):
#: none on one CPU, where a parse would otherwise wait out the whole of a busy loop.
PARSE_NICE = 10 if (os.cpu_count() or 1) > 1 else 0
STORIES_KEYS = ("quiet",)
CHANNEL_KEYS = (
    "url",
    "config",
    "tags",
    "format",
    "template",
    "quiet_hours",
    "timezone",
    "digest",
)
TEMPLATE_KEYS = ("title", "body")
FORMATS = ("email", "markdown", "json", "text")
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
_FEED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_ENV = re.compile(r"\$\{(credential:)?([A-Za-z_][A-Za-z0-9_.-]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 10**6,
    "mib": 2**20,
    "gb": 10**9,
    "gib": 2**30,
    None: 1,
}
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _url_problem(url: str) -> str | None:
    """What the fetcher would refuse in a feed URL before fetching it (masked)."""
    if any(c.isspace() for c in url):
        return (
            "the url has a space or another blank in it: percent-encode it (%20), in a user "
            "name or password too"
        )
    from monitor.fetch import url_problem  # httpx: loaded only when there are feeds

    return url_problem(url)


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
    fetch_max_bytes: int = 15 * 2**20
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
    parse_memory_limit: int | None = 512 * 2**20
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


def parse_duration(value: Any) -> float | None:
    """'90s', '15m', '1.5h', '2d', '250ms' or a plain number of seconds; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def parse_size(value: Any) -> int | None:
    """'15MiB', '500 kB', '1GiB' or a plain number of bytes; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        return int(float(m.group(1)) * _SIZE_UNITS[unit])
    return None


class _Reader:
    """Collects errors while reading one file."""

    def __init__(self, path: Path, env: Mapping[str, str], secrets: bool = True) -> None:
        self.path = path
        self.env = env
        #: False: a missing environment variable or credential is left empty, not an
        #: error (commands that only read the database need no channel secrets).
        self.secrets = secrets
        self.errors: list[ConfigError] = []
        #: Where each feed read so far is named: (name, file, (line, column)).
        self.feed_places: list[tuple[str, Path, tuple[int, int]]] = []

    def error(self, message: str, pos: tuple[int, int]) -> None:
        self.errors.append(ConfigError(message, str(self.path), pos[0], pos[1]))

    def expand(self, value: str, pos: tuple[int, int]) -> str:
        def sub(m: re.Match[str]) -> str:
            credential, name, default = m.group(1), m.group(2), m.group(3)
            if credential:
                return self.credential(name, default, pos)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            if self.secrets:
                self.error(
                    f"environment variable {name} is not set; export it or write "
                    f"${{{name}:-default}}",
                    pos,
                )
            return ""

        return _ENV.sub(sub, value)

    def credential(self, name: str, default: str | None, pos: tuple[int, int]) -> str:
        """A systemd credential (LoadCredential=): the file ``name`` in
        ``$CREDENTIALS_DIRECTORY``, without its final newline."""
        directory = self.env.get("CREDENTIALS_DIRECTORY")
        if directory and "/" not in name:
            try:
                return (Path(directory) / name).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError:
                pass
        if default is not None:
            return default
        if not self.secrets:
            return ""
        where = f"in {directory}" if directory else "(CREDENTIALS_DIRECTORY is not set)"
        self.error(
            f"credential {name} not found {where}; add LoadCredential={name}:/path/to/secret "
            "to the service unit",
            pos,
        )
        return ""

    def string(self, data: YamlMap, key: str, default: str | None = None) -> str | None:
        if key not in data:
            return default
        value = data[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            self.error(f"`{key}` must be a non-empty string", data.pos(key))
            return default
        return self.expand(str(value), data.pos(key))

    def duration(self, data: YamlMap, key: str, default: float, minimum: float) -> float:
        if key not in data:
            return default
        seconds = parse_duration(data[key])
        if seconds is None or seconds < minimum:
            self.error(
                f"`{key}` must be a duration such as 30s, 15m or 2h, at least {minimum:g}s; "
                f"got {data[key]!r}",
                data.pos(key),
            )
            return default
        return seconds

    def flag(self, data: YamlMap, key: str, default: Any) -> Any:
        value = data.get(key, default)
        if value is not default and not isinstance(value, bool):
            self.error(f"`{key}` must be true or false", data.pos(key))
            return default
        return value

    def channel(self, name: str, spec: Any, where: YamlMap) -> ChannelConfig | None:
        """A channel: an apprise URL, or a mapping with `url` or `config` and options."""
        if not isinstance(spec, YamlMap):
            url = self.string(where, name)
            return ChannelConfig(name, self._channel_url(name, url, where, name)) if url else None
        self.unknown(spec, CHANNEL_KEYS, f"channel {name!r}")
        if ("url" in spec) == ("config" in spec):
            self.error(
                f"channel {name!r} needs either `url` (an apprise URL) or `config` (an apprise "
                "config file), not both",
                where.pos(name),
            )
            return None
        url = (
            self._channel_url(name, self.string(spec, "url"), spec, "url") if "url" in spec else ""
        )
        config_file = ""
        if "config" in spec:
            config_file = str(self.path.parent / (self.string(spec, "config") or ""))
        fmt = self.string(spec, "format")
        if fmt is not None and fmt not in FORMATS:
            self.error(
                f"channel {name!r}: `format` must be one of {', '.join(FORMATS)}",
                spec.pos("format"),
            )
            fmt = None
        timezone = check_timezone(
            self.string(spec, "timezone", "UTC") or "UTC",
            spec.pos("timezone"),
            self.error,
            f"channel {name!r}: ",
        )
        quiet = None
        if "quiet_hours" in spec:
            quiet = parse_quiet_hours(str(spec["quiet_hours"]), timezone)
            if quiet is None:
                self.error(
                    f"channel {name!r}: `quiet_hours` must be a span such as 22:00-07:00",
                    spec.pos("quiet_hours"),
                )
        return ChannelConfig(
            name,
            url or "",
            self.names(spec, "tags"),
            config_file=config_file,
            format=fmt,
            template=read_template(spec, "template", self.error),
            quiet_hours=quiet,
            digest=read_cron(spec, "digest", timezone, self.error),
            timezone=timezone,
        )

    def _channel_url(self, name: str, url: str | None, data: YamlMap, key: str) -> str:
        if url is not None and "://" not in url:
            self.error(
                f"channel {name!r} must be an apprise URL such as mailto://... or "
                "json://host/path (see https://github.com/caronc/apprise/wiki)",
                data.pos(key),
            )
        return url or ""

    def count(
        self, data: YamlMap, key: str, default: int, minimum: int, maximum: int | None = None
    ) -> int:
        value = data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bounds = (
                f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            )
            self.error(f"`{key}` must be a whole number, {bounds}", data.pos(key))
            return default
        return value

    def unknown(self, data: YamlMap, allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                self.error(
                    f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}",
                    data.pos(key),
                )

    def mapping(self, data: YamlMap, key: str) -> YamlMap:
        value = data.get(key)
        if value is None:
            return _empty_map(data.pos(key))
        if not isinstance(value, YamlMap):
            self.error(f"`{key}` must be a mapping", data.pos(key))
            return _empty_map(data.pos(key))
        return value

    def feeds(self, items: Any, pos: tuple[int, int]) -> list[FeedConfig]:
        if not isinstance(items, YamlList):
            self.error("`feeds` must be a list of {name, url, interval, enabled}", pos)
            return []
        feeds = []
        for index, item in enumerate(items):
            ipos = items.pos(index)
            if not isinstance(item, YamlMap):
                self.error("each feed must be a mapping with `name` and `url`", ipos)
                continue
            self.unknown(item, FEED_KEYS, "a feed")
            name = self.string(item, "name")
            url = self.string(item, "url")
            if name is None:
                self.error("feed has no `name`", ipos)
            elif not _FEED_NAME.match(name):
                self.error(
                    f"bad feed name {name!r}: use letters, digits, '-', '_', '.'", item.pos("name")
                )
            if url is None:
                self.error(f"feed {name!r} has no `url`", ipos)
            elif not re.match(r"^https?://[^/\s]+", url):
                self.error(
                    f"feed {name!r}: url must start with http:// or https://", item.pos("url")
                )
            elif (problem := _url_problem(url)) is not None:
                self.error(f"feed {name!r}: {problem}", item.pos("url"))
            interval = self.duration(item, "interval", 900.0, 1.0)
            enabled = self.flag(item, "enabled", True)
            tags = self.names(item, "tags")
            silence = self.duration(item, "silence", -1.0, 0.0) if "silence" in item else None
            baseline = self.flag(item, "baseline", None)
            if name and url:
                feeds.append(FeedConfig(name, url, interval, enabled, tags, silence, baseline))
                self.feed_places.append((name, self.path, item.pos("name")))
        return feeds

    def channel_list(
        self, data: YamlMap, key: str, label: str, defined: set[str]
    ) -> tuple[str, ...]:
        """A list of channel names that must all be defined under `channels:`."""
        listed = self.names(data, key)
        for name in listed:
            if name not in defined:
                self.error(f"{label} {name!r} is not defined under `channels:`", data.pos(key))
        return listed

    def names(self, data: YamlMap, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.error(f"`{key}` must be a list of names", data.pos(key))
            return ()
        return tuple(value)


ErrorSink = Callable[[str, tuple[int, int]], None]


def read_template(data: YamlMap, key: str, error: ErrorSink) -> Template | None:
    """`template: {title: ..., body: ...}` (Jinja2), checked to compile."""
    if key not in data:
        return None
    spec = data[key]
    if not isinstance(spec, YamlMap) or not spec or set(spec) - set(TEMPLATE_KEYS):
        error(f"`{key}` must be a mapping with `title` and/or `body` (Jinja2)", data.pos(key))
        return None
    parts: dict[str, str] = {}
    for part in TEMPLATE_KEYS:
        if part not in spec:
            continue
        source = spec[part]
        if not isinstance(source, str):
            error(f"`{key}.{part}` must be a string", spec.pos(part))
            continue
        if (problem := check_template(source)) is not None:
            error(f"`{key}.{part}`: {problem}", spec.pos(part))
            continue
        parts[part] = source
    return Template(title=parts.get("title"), body=parts.get("body")) if parts else None


def feeds_from_paths(value: Any, base: Path) -> list[Path] | None:
    """The files a `feeds_from` value names (one file or a list of them), relative to
    ``base``; None if it is neither."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return None
    return [base / str(name) for name in value]


def check_timezone(timezone: str, pos: tuple[int, int], error: ErrorSink, prefix: str = "") -> str:
    """``timezone`` if it is an IANA time zone name, else "UTC" and an error."""
    if zone(timezone) is None:
        error(
            f"{prefix}unknown time zone {timezone!r}; use an IANA name such as Europe/Kyiv or UTC",
            pos,
        )
        return "UTC"
    return timezone


def read_cron(data: YamlMap, key: str, timezone: str, error: ErrorSink) -> str | None:
    """A five-field cron schedule such as "0 8 * * mon-fri"."""
    if key not in data:
        return None
    value = data[key]
    problem = cron_error(value, timezone) if isinstance(value, str) else "not a string"
    if problem is not None:
        error(
            f'`{key}` must be a cron schedule such as "0 8 * * mon-fri" (minute hour day '
            f"month weekday): {problem}",
            data.pos(key),
        )
        return None
    return str(value)


def _empty_map(pos: tuple[int, int]) -> YamlMap:
    return YamlMap.at(pos)


def _valid_allow_entry(entry: str) -> bool:
    from monitor.fetch import AddressPolicy  # the fetch stage owns the rule

    try:
        AddressPolicy([entry])
    except ValueError:
        return False
    return True


def load_settings(path: Path, env: Mapping[str, str], *, secrets: bool = True) -> Settings:
    """Read and validate the settings file; raise :class:`ConfigErrors` listing every problem.

    ``secrets`` False: unset environment variables and credentials become empty instead
    of errors, for commands that never send (the daemon's secrets stay the daemon's)."""
    reader = _Reader(path, env, secrets)
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
    reader.unknown(data, TOP_KEYS, "the settings file")
    base = path.parent
    database = base / (reader.string(data, "database") or "news-monitor.db")
    rules_dir = base / (reader.string(data, "rules_dir") or "rules")

    feeds = reader.feeds(data.get("feeds", YamlList()), data.pos("feeds"))
    feed_files = feeds_from_paths(data.get("feeds_from", []), base)
    if feed_files is None:
        reader.error("`feeds_from` must be a list of YAML files", data.pos("feeds_from"))
        feed_files = []
    places = list(reader.feed_places)
    for other in feed_files:
        sub = _Reader(other, env, secrets)
        if not other.exists():
            reader.error(
                f"feeds_from file {other} does not exist: create it (a list of feeds, or "
                "[] for none) or take it out of `feeds_from`",
                data.pos("feeds_from"),
            )
            continue
        try:
            items = load_yaml(other)
        except ConfigError as exc:
            reader.errors.append(exc)
            continue
        if isinstance(items, YamlMap) and "feeds" in items:
            sub.error(
                "a feeds_from file is the list itself, as the value of `feeds:` in the "
                "settings file: take out the `feeds:` line and unindent the entries",
                items.pos("feeds"),
            )
        else:
            feeds.extend(sub.feeds(items if items is not None else YamlList(), (1, 1)))
        reader.errors.extend(sub.errors)
        places += sub.feed_places
    first: dict[str, tuple[Path, tuple[int, int]]] = {}
    for name, file, pos in places:
        if name in first:
            was, (line, column) = first[name]
            reader.errors.append(
                ConfigError(
                    f"duplicate feed name {name!r} (first at {was}:{line}:{column}); feed "
                    "names must be unique",
                    str(file),
                    *pos,
                )
            )
        else:
            first[name] = (file, pos)

    channels: list[ChannelConfig] = []
    chans = reader.mapping(data, "channels")
    for name in chans:
        channel = reader.channel(name, chans[name], chans)
        if channel is not None:
            channels.append(replace(channel, pos=chans.pos(name)))
    names = {c.name for c in channels}

    defaults = reader.channel_list(data, "default_channels", "default channel", names)
    operators = reader.channel_list(data, "operator_channels", "operator channel", names)
    health = reader.mapping(data, "health")
    reader.unknown(health, HEALTH_KEYS, "`health`")
    failures = health.get("failures", 5)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        reader.error("`failures` must be a whole number, 1 or more", health.pos("failures"))
        failures = 5

    parse = reader.mapping(data, "parse")
    reader.unknown(parse, PARSE_KEYS, "`parse`")
    memory_limit: int | None = 512 * 2**20
    if "memory_limit" in parse:
        raw_limit = parse["memory_limit"]
        memory_limit = None if raw_limit in (0, None, "none") else parse_size(raw_limit)
        if memory_limit is None and raw_limit not in (0, None, "none"):
            reader.error(
                f"`memory_limit` must be a size such as 512MiB or 1GiB (or 0 for no cap); "
                f"got {raw_limit!r}",
                parse.pos("memory_limit"),
            )
            memory_limit = 512 * 2**20
        elif memory_limit is not None and memory_limit < 128 * 2**20:
            reader.error(
                "`memory_limit` must be a size of at least 128MiB (or 0 for no cap)",
                parse.pos("memory_limit"),
            )
            memory_limit = 512 * 2**20

    fetch = reader.mapping(data, "fetch")
    reader.unknown(fetch, FETCH_KEYS, "`fetch`")
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
    max_bytes = parse_size(fetch.get("max_bytes", 15 * 2**20))
    if max_bytes is None or max_bytes < 1024:
        reader.error(
            "`max_bytes` must be a size such as 15MiB (at least 1KiB)", fetch.pos("max_bytes")
        )
        max_bytes = 15 * 2**20
    delivery = reader.mapping(data, "delivery")
    reader.unknown(delivery, DELIVERY_KEYS, "`delivery`")
    stories = reader.mapping(data, "stories")
    reader.unknown(stories, STORIES_KEYS, "`stories`")
    retention = reader.mapping(data, "retention")
    reader.unknown(retention, RETENTION_KEYS, "`retention`")
    keep_articles = reader.duration(retention, "articles", 30 * 86400.0, 86400.0)
    keep_hits = reader.duration(retention, "hits", 365 * 86400.0, 86400.0)
    if keep_hits < keep_articles:
        reader.error(
            "`retention.hits` must be at least `retention.articles` (hits are kept longer)",
            retention.pos("hits"),
        )
    metrics = reader.mapping(data, "metrics")
    reader.unknown(metrics, METRICS_KEYS, "`metrics`")
    listen = None
    if metrics.get("listen") not in (None, False, ""):
        from monitor.metrics import parse_listen

        listen = parse_listen(str(metrics["listen"]))
        if listen is None:
            reader.error(
                "`metrics.listen` must be host:port, such as 127.0.0.1:9464",
                metrics.pos("listen"),
            )
    settings = Settings(
        path=path,
        database=database,
        rules_dir=rules_dir,
        feeds=tuple(feeds),
        channels=tuple(channels),
        default_channels=defaults,
        fetch_timeout=reader.duration(fetch, "timeout", 30.0, 0.1),
        jitter=reader.duration(fetch, "jitter", 5.0, 0.0),
        user_agent=reader.string(fetch, "user_agent", "") or "",
        fetch_allow_private=allow_private,
        fetch_max_bytes=max_bytes,
        fetch_max_redirects=reader.count(fetch, "max_redirects", 10, 0),
        fetch_per_host=reader.count(fetch, "per_host", 2, 1),
        fetch_total=reader.count(fetch, "total", 20, 1),
        fetch_retry_after_cap=reader.duration(fetch, "retry_after_cap", 31 * 86400.0, 0.0),
        fetch_max_backoff=reader.duration(fetch, "max_backoff", 6 * 3600.0, 1.0),
        parse_workers=reader.count(parse, "workers", 2, 1),
        parse_deadline=reader.duration(parse, "deadline", 20.0, 1.0),
        parse_memory_limit=memory_limit,
        parse_nice=reader.count(parse, "nice", PARSE_NICE, 0, maximum=19),
        delivery_interval=reader.duration(delivery, "interval", 5.0, 0.05),
        retry_min=reader.duration(delivery, "retry_min", 30.0, 0.0),
        retry_max=reader.duration(delivery, "retry_max", 3600.0, 0.0),
        delivery_max_age=reader.duration(delivery, "max_age", 2 * 86400.0, 60.0),
        storm=reader.count(delivery, "storm", 25, 0),
        baseline=reader.flag(delivery, "baseline", True),
        reload_interval=reader.duration(data, "reload_interval", 5.0, 0.1),
        operator_channels=operators,
        health_failures=failures,
        health_silence=reader.duration(health, "silence", 0.0, 0.0),
        story_quiet=reader.duration(stories, "quiet", 2 * 86400.0, 60.0),
        files=(path, *feed_files),
        keep_articles=keep_articles,
        keep_hits=keep_hits,
        metrics_listen=listen,
        metrics_stale_after=reader.duration(metrics, "stale_after", 120.0, 5.0),
    )
    if reader.errors:
        raise ConfigErrors(reader.errors)
    return settings
