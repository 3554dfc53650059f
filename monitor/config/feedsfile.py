"""Edit the feed lists of the settings in place: add, remove, pause and resume feeds.

Feeds live in the settings file's ``feeds:`` list and in the files named under
``feeds_from:`` (each one a YAML list of the same entries). These files are written by
hand and full of comments, so an edit changes only the lines of the entry concerned
(:mod:`monitor.config.feedsfile_read` finds them, :mod:`monitor.config.feedsfile_write`
splices and writes them), and then the whole settings are loaded again; if they no
longer load, the old text is put back.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.config.feeds import FEED_NAME
from monitor.config.feedsfile_read import Entry, FeedFiles, FeedList, read_feed_files
from monitor.config.feedsfile_write import (
    NewFeed,
    as_plain,
    encode_lines,
    entry_data,
    lines_enabled,
    lines_with,
    lines_without,
    verify_edit,
    write_atomic,
)
from monitor.config.settings import Settings, load_settings
from monitor.config.values import parse_duration
from monitor.errors import ConfigError, ConfigErrors
from monitor.text import mask_url

# What `news-monitor feeds` uses, with the edits themselves.
__all__ = [
    "Change",
    "FeedFiles",
    "NewFeed",
    "RolledBack",
    "add_feeds",
    "check_new_feed",
    "read_feed_files",
    "remove_feed",
    "set_enabled",
    "unknown_feed",
    "url_key",
    "url_owners",
    "valid_url",
]

_URL = re.compile(r"^https?://[^/\s]+")


@dataclass
class Change:
    """What an edit did."""

    path: Path
    #: One line per change, for people.
    done: list[str] = field(default_factory=list)
    #: Things worth knowing that did not stop the edit (the same URL twice...).
    warnings: list[str] = field(default_factory=list)
    #: False when nothing needed changing (a paused feed paused again).
    changed: bool = True
    #: The settings as they load after the edit.
    settings: Settings | None = None


class RolledBack(ConfigErrors):
    """The edited settings did not load, so the file was restored; ``errors`` say why."""

    def __init__(self, errors: Sequence[ConfigError], file: Path) -> None:
        super().__init__(errors)
        #: The file that was edited and restored.
        self.file = file


def _load(settings_path: Path, env: Mapping[str, str]) -> Settings:
    if not settings_path.is_file():
        raise ConfigError(
            "settings file not found; pass --config or copy config.example.yaml",
            str(settings_path),
        )
    # Without secrets: an edit checks the settings' shape, and whoever edits the feed
    # lists need not hold the daemon's passwords (a LoadCredential= file, say).
    return load_settings(settings_path, env, secrets=False)


def _commit(
    settings_path: Path,
    env: Mapping[str, str],
    feed_list: FeedList,
    lines: list[str],
    items: list[Any],
    check: Callable[[Settings], str | None],
) -> Settings:
    """Verify, write, reload; restore the old text if the settings no longer load or
    ``check(settings)`` returns an error message."""
    data = encode_lines(feed_list, lines)
    verify_edit(feed_list, data, items)
    # The edit must load as the daemon loads it, secrets and all; but whoever edits the
    # feed lists need not hold the daemon's secrets (a LoadCredential= file, say): an
    # unresolved secret the settings had before the edit is not the edit's fault.
    before = Counter(e.message for e in _secret_errors(settings_path, env))
    write_atomic(feed_list.path, data, expect=feed_list.raw)
    try:
        try:
            settings = load_settings(settings_path, env)
        except ConfigErrors as exc:
            new = []
            for error in exc.errors:
                if before[error.message] > 0:
                    before[error.message] -= 1  # there before the edit
                else:
                    new.append(error)
            if new:
                raise ConfigErrors(new) from exc
            settings = load_settings(settings_path, env, secrets=False)
        problem = check(settings)
        if problem:
            raise ConfigErrors([ConfigError(problem, feed_list.label)])
    except ConfigErrors as exc:
        write_atomic(feed_list.path, feed_list.raw)
        raise RolledBack(exc.errors, feed_list.path) from exc
    except BaseException:  # whatever stopped the check, do not leave the edit unchecked
        write_atomic(feed_list.path, feed_list.raw)
        raise
    return settings


def _secret_errors(settings_path: Path, env: Mapping[str, str]) -> list[ConfigError]:
    """The errors of loading the settings as the daemon does (none, usually; else the
    secrets this environment lacks)."""
    try:
        load_settings(settings_path, env)
    except ConfigErrors as exc:
        return list(exc.errors)
    return []


def valid_url(url: str) -> bool:
    """An http(s) URL with a host and no spaces (``${ENV}`` references are checked once
    the settings load)."""
    return not any(c.isspace() for c in url) and ("${" in url or bool(_URL.match(url)))


def check_new_feed(feed: NewFeed, where: str) -> None:
    """Raise :class:`ConfigError` (naming ``where``) unless the settings would accept it."""
    if not FEED_NAME.match(feed.name):
        raise ConfigError(
            f"bad feed name {feed.name!r}: use letters, digits, '-', '_', '.' (starting "
            "with a letter or digit, at most 80 characters)",
            where,
        )
    if not valid_url(feed.url):
        raise ConfigError(
            f"feed {feed.name!r}: url must start with http:// or https:// and hold no spaces; "
            f"got {mask_url(feed.url)!r}",
            where,
        )
    seconds = parse_duration(feed.interval)
    if seconds is None or seconds < 1:
        raise ConfigError(
            f"feed {feed.name!r}: interval must be a duration such as 30s, 15m or 2h, at "
            f"least 1s; got {feed.interval!r}",
            where,
        )
    for tag in feed.tags:
        if not tag.strip() or any(c in tag for c in "\r\n"):
            raise ConfigError(f"feed {feed.name!r}: bad tag {tag!r}", where)


def url_key(url: str) -> tuple[str, ...]:
    """What two addresses of the same feed have in common: the same up to the case of
    scheme and host and a final /. (An address that does not parse is its own key.)"""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ("unparsable", url)
    return (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query)


def url_owners(files: FeedFiles, settings: Settings) -> dict[tuple[str, ...], tuple[str, str]]:
    """The feeds configured already, by :func:`url_key` of the URL they poll (as written
    and as expanded): (name, file) of the first one for each."""
    expanded = {f.name: f.url for f in settings.feeds}
    owners: dict[tuple[str, ...], tuple[str, str]] = {}
    for feed_list in files.lists:
        for entry in feed_list.entries:
            if not entry.name:
                continue
            for url in (entry.url or "", expanded.get(entry.name, "")):
                if url:
                    owners.setdefault(url_key(url), (entry.name, feed_list.where(entry)))
    return owners


def unknown_feed(files: FeedFiles, name: str) -> ConfigError:
    names = ", ".join(sorted(files.names())) or "none"
    places = " or ".join(str(fl.path) for fl in files.lists)
    return ConfigError(
        f"no feed named {name!r} in {places} (feeds: {names})", str(files.settings_path)
    )


def add_feeds(
    settings_path: Path,
    feeds: Sequence[NewFeed],
    env: Mapping[str, str],
    *,
    file: Path | None = None,
) -> Change:
    """Append ``feeds`` to the settings' `feeds:` list, or to the ``feeds_from`` file
    ``file``. Refuses names already taken (anywhere) and invalid entries; a URL already
    polled by another feed is only a warning."""
    before = _load(settings_path, env)
    files = read_feed_files(settings_path)
    target = files.target(file)
    change = Change(target.path)
    taken: dict[str, str] = {}
    for feed_list in files.lists:
        for entry in feed_list.entries:
            if entry.name is not None:
                taken.setdefault(entry.name, feed_list.where(entry))
    for config in before.feeds:
        taken.setdefault(config.name, str(settings_path))
    owners = url_owners(files, before)
    for feed in feeds:
        check_new_feed(feed, target.label)
        if feed.name in taken:
            raise ConfigError(
                f"a feed named {feed.name!r} already exists ({taken[feed.name]}); "
                "choose another name",
                target.label,
            )
        taken[feed.name] = target.label
        owner = owners.get(url_key(feed.url))
        if owner is not None:
            change.warnings.append(
                f"feed {owner[0]!r} ({owner[1]}) already polls {mask_url(feed.url)}; "
                f"{feed.name!r} will fetch the same feed again"
            )
    if not feeds:
        change.changed = False
        return change
    lines = lines_with(target, feeds)
    items = [as_plain(e.data) for e in target.entries] + [entry_data(f) for f in feeds]
    wanted = {f.name for f in feeds}

    def check(settings: Settings) -> str | None:
        missing = wanted - {f.name for f in settings.feeds}
        return f"the new feeds did not come out as written: {sorted(missing)}" if missing else None

    change.settings = _commit(settings_path, env, target, lines, items, check)
    change.done = [f"added feed {f.name!r} to {target.label}" for f in feeds]
    return change


def _rules_naming(settings: Settings, name: str) -> list[str]:
    """Rules limited to feed ``name`` (or to a tag only it has) that would point at
    nothing once it is gone."""
    from monitor.match import load_rules

    feeds = {f.name: f.tags for f in settings.feeds}
    remaining = {n: t for n, t in feeds.items() if n != name}

    def resolves(entry: str, known: Mapping[str, tuple[str, ...]]) -> bool:
        return entry in known or any(entry in tags for tags in known.values())

    out = []
    for rule in load_rules(settings.rules_dir).rules:
        for entry in rule.feeds:
            if resolves(entry, feeds) and not resolves(entry, remaining):
                out.append(f"rule {rule.name!r} ({rule.path}:{rule.line}) scopes to {entry!r}")
    return out


def _locate(
    settings_path: Path, name: str, env: Mapping[str, str]
) -> tuple[Settings, FeedList, Entry]:
    """The settings as they load now, and the list and entry that define feed ``name``
    (an error listing the known feeds if none does)."""
    before = _load(settings_path, env)
    files = read_feed_files(settings_path)
    found = files.find(name)
    if found is None:
        raise unknown_feed(files, name)
    feed_list, entry = found
    return before, feed_list, entry


def remove_feed(settings_path: Path, name: str, env: Mapping[str, str]) -> Change:
    """Remove the feed ``name`` from whichever file defines it, with the comment lines
    that document it. Refuses while a rule is limited to it."""
    before, feed_list, entry = _locate(settings_path, name, env)
    naming = _rules_naming(before, name)
    if naming:
        raise ConfigError(
            f"cannot remove feed {name!r}: {'; '.join(naming)}. Edit the rule first, or "
            f"pause the feed instead (news-monitor feeds pause {name})",
            feed_list.where(entry),
        )
    lines = lines_without(feed_list, entry)
    items = [as_plain(e.data) for e in feed_list.entries if e is not entry]

    def check(settings: Settings) -> str | None:
        if any(f.name == name for f in settings.feeds):
            return f"feed {name!r} is still configured after the edit"
        return None

    where = feed_list.where(entry)
    change = Change(feed_list.path)
    change.settings = _commit(settings_path, env, feed_list, lines, items, check)
    change.done = [f"removed feed {name!r} from {where}"]
    return change


def set_enabled(settings_path: Path, name: str, enabled: bool, env: Mapping[str, str]) -> Change:
    """Write ``enabled: true/false`` into the entry of feed ``name`` (pause / resume)."""
    before, feed_list, entry = _locate(settings_path, name, env)
    where = feed_list.where(entry)
    change = Change(feed_list.path)
    current = next((f.enabled for f in before.feeds if f.name == name), True)
    if current == enabled:
        change.changed = False
        change.settings = before
        state = "enabled" if enabled else "paused"
        change.done = [f"feed {name!r} is already {state} ({where}); nothing changed"]
        return change
    if entry.flow:
        raise ConfigError(
            f"feed {name!r} is written in flow style ({{name: ..., url: ...}}); set "
            f"`enabled: {str(enabled).lower()}` by hand",
            where,
        )
    lines = lines_enabled(feed_list, entry, enabled)
    items = [as_plain(e.data) for e in feed_list.entries]
    items[entry.index] = {**items[entry.index], "enabled": enabled}

    def check(settings: Settings) -> str | None:
        if not any(f.name == name and f.enabled == enabled for f in settings.feeds):
            return f"feed {name!r} did not come out {'enabled' if enabled else 'paused'}"
        return None

    change.settings = _commit(settings_path, env, feed_list, lines, items, check)
    verb = "resumed" if enabled else "paused"
    change.done = [f"{verb} feed {name!r} ({where}: enabled: {str(enabled).lower()})"]
    return change
