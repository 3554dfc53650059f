"""The feeds of the settings: the `feeds:` list and the `feeds_from` files, each entry
checked, and every feed name unique across all of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from monitor.config.reader import Reader
from monitor.config.yamlfile import YamlList, YamlMap, load_yaml
from monitor.errors import ConfigError
from monitor.models import FeedConfig

FEED_KEYS = ("name", "url", "interval", "enabled", "tags", "silence", "baseline")
FEED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")

#: Where a feed is named: (name, file, (line, column)).
FeedPlace = tuple[str, Path, tuple[int, int]]


def _url_problem(url: str) -> str | None:
    """What the fetcher would refuse in a feed URL before fetching it (masked)."""
    if any(c.isspace() for c in url):
        return (
            "the url has a space or another blank in it: percent-encode it (%20), in a user "
            "name or password too"
        )
    from monitor.fetch import url_problem  # httpx: loaded only when there are feeds

    return url_problem(url)


def feeds_from_paths(value: Any, base: Path) -> list[Path] | None:
    """The files a `feeds_from` value names (one file or a list of them), relative to
    ``base``; None if it is neither."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return None
    return [base / str(name) for name in value]


def read_feed_list(reader: Reader, items: Any, pos: tuple[int, int]) -> list[FeedConfig]:
    """The entries of one feed list; where each is named goes to ``reader.feed_places``."""
    if not isinstance(items, YamlList):
        reader.error("`feeds` must be a list of {name, url, interval, enabled}", pos)
        return []
    feeds = []
    for index, item in enumerate(items):
        ipos = items.pos(index)
        if not isinstance(item, YamlMap):
            reader.error("each feed must be a mapping with `name` and `url`", ipos)
            continue
        reader.unknown(item, FEED_KEYS, "a feed")
        name = reader.string(item, "name")
        url = reader.string(item, "url")
        if name is None:
            reader.error("feed has no `name`", ipos)
        elif not FEED_NAME.match(name):
            reader.error(
                f"bad feed name {name!r}: use letters, digits, '-', '_', '.'", item.pos("name")
            )
        if url is None:
            reader.error(f"feed {name!r} has no `url`", ipos)
        elif not re.match(r"^https?://[^/\s]+", url):
            reader.error(f"feed {name!r}: url must start with http:// or https://", item.pos("url"))
        elif (problem := _url_problem(url)) is not None:
            reader.error(f"feed {name!r}: {problem}", item.pos("url"))
        interval = reader.duration(item, "interval", 900.0, 1.0)
        enabled = reader.flag(item, "enabled", True)
        tags = reader.names(item, "tags")
        silence = reader.duration(item, "silence", -1.0, 0.0) if "silence" in item else None
        baseline = reader.flag(item, "baseline", None)
        if name and url:
            feeds.append(FeedConfig(name, url, interval, enabled, tags, silence, baseline))
            reader.feed_places.append((name, reader.path, item.pos("name")))
    return feeds


def read_feeds(reader: Reader, data: YamlMap) -> tuple[list[FeedConfig], list[Path]]:
    """Every feed of the settings file ``data``: its `feeds:` list, then each `feeds_from`
    file's; and those files."""
    feeds = read_feed_list(reader, data.get("feeds", YamlList()), data.pos("feeds"))
    feed_files = feeds_from_paths(data.get("feeds_from", []), reader.path.parent)
    if feed_files is None:
        reader.error("`feeds_from` must be a list of YAML files", data.pos("feeds_from"))
        feed_files = []
    places = list(reader.feed_places)
    for other in feed_files:
        more, where = _read_feeds_file(reader, other, data.pos("feeds_from"))
        feeds.extend(more)
        places += where
    _check_unique_names(reader, places)
    return feeds, feed_files


def _read_feeds_file(
    reader: Reader, path: Path, pos: tuple[int, int]
) -> tuple[list[FeedConfig], list[FeedPlace]]:
    """The feeds of one `feeds_from` file and where they are named; its errors go to
    ``reader`` (one at ``pos``, the `feeds_from` key, when the file is missing)."""
    if not path.exists():
        reader.error(
            f"feeds_from file {path} does not exist: create it (a list of feeds, or "
            "[] for none) or take it out of `feeds_from`",
            pos,
        )
        return [], []
    try:
        items = load_yaml(path)
    except ConfigError as exc:
        reader.errors.append(exc)
        return [], []
    sub = Reader(path, reader.env, reader.secrets)
    feeds: list[FeedConfig] = []
    if isinstance(items, YamlMap) and "feeds" in items:
        sub.error(
            "a feeds_from file is the list itself, as the value of `feeds:` in the "
            "settings file: take out the `feeds:` line and unindent the entries",
            items.pos("feeds"),
        )
    else:
        feeds = read_feed_list(sub, items if items is not None else YamlList(), (1, 1))
    reader.errors.extend(sub.errors)
    return feeds, sub.feed_places


def _check_unique_names(reader: Reader, places: list[FeedPlace]) -> None:
    """An error at each feed named like one before it (in any of the files)."""
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
