"""Writing a feed list: the new lines of an edit, checked, and the file replaced.

The edit is a splice of the entry's lines; everything else stays byte for byte (dumping
the whole document again would move or drop comments, re-indent lists and could fold
long lines). The new text must parse to exactly the intended entries before it is
written, and the file is replaced atomically (temporary file + rename, same mode and
owner).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml.error import YAMLError

from monitor.config.feedsfile_read import (
    UTF8_BOM,
    Entry,
    FeedList,
    is_blank,
    is_comment,
    is_flow,
    yaml_parser,
)
from monitor.errors import ConfigError

_BOOL = re.compile(r"(true|True|TRUE|false|False|FALSE)(?=\s|#|$)")
_EMPTY_FLOW = re.compile(r"\[\s*\]")


@dataclass(frozen=True)
class NewFeed:
    """A feed to add, as it will be written."""

    name: str
    url: str
    #: As written in the file: 15m, 1h, 90s...
    interval: str = "15m"
    enabled: bool = True
    tags: tuple[str, ...] = ()


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as this very string (quoted when it
    would otherwise be a number, a boolean, null... or not parse)."""
    text = yaml.safe_dump(value, allow_unicode=True, width=2**31 - 1)
    return text.removesuffix("\n...\n").removesuffix("\n")


def _flow_list(values: Sequence[str]) -> str:
    text = yaml.safe_dump(
        list(values), default_flow_style=True, allow_unicode=True, width=2**31 - 1
    )
    return text.rstrip("\n")


def render_entry(feed: NewFeed, dash_col: int, key_offset: int, newline: str = "\n") -> list[str]:
    """The lines of one list item: ``- name: ...`` with the keys aligned under ``name``."""
    pairs = [("name", _scalar(feed.name)), ("url", _scalar(feed.url))]
    pairs.append(("interval", _scalar(feed.interval)))
    if not feed.enabled:
        pairs.append(("enabled", "false"))
    if feed.tags:
        pairs.append(("tags", _flow_list(feed.tags)))
    offset = max(key_offset, 2)
    dash = " " * dash_col + "-" + " " * (offset - 1)
    keys = " " * (dash_col + offset)
    return [f"{dash if i == 0 else keys}{k}: {v}{newline}" for i, (k, v) in enumerate(pairs)]


def as_plain(value: Any) -> Any:
    """ruamel's values as plain dicts, lists and scalars, for comparing documents."""
    if isinstance(value, Mapping):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def entry_data(feed: NewFeed) -> dict[str, Any]:
    out: dict[str, Any] = {"name": feed.name, "url": feed.url, "interval": feed.interval}
    if not feed.enabled:
        out["enabled"] = False
    if feed.tags:
        out["tags"] = list(feed.tags)
    return out


def _expected(feed_list: FeedList, items: list[Any]) -> Any:
    """The whole document as it must read after the edit: only the list differs."""
    if not feed_list.in_settings:
        return items
    document = as_plain(feed_list.document)
    document["feeds"] = items
    return document


def _ensure_newline(lines: list[str], newline: str) -> None:
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += newline


def _blank_separated(feed_list: FeedList) -> bool:
    """Whether the list's entries are set apart by blank lines (or, for a lone entry, it
    comes with comments: the next one gets the same air)."""
    entries = feed_list.entries
    if len(entries) == 1:
        return entries[0].first < entries[0].dash
    return any(
        any(is_blank(line) for line in feed_list.lines[a.last + 1 : b.first])
        for a, b in pairwise(entries)
    )


def _editable(feed_list: FeedList) -> None:
    if feed_list.entries and is_flow(feed_list.seq):
        raise ConfigError(
            "the feed list is written in flow style ([...]); write it as a block list "
            "(one `- name: ...` entry per feed) to edit it with this command",
            feed_list.label,
            feed_list.entries[0].line,
        )


def lines_with(feed_list: FeedList, feeds: Sequence[NewFeed]) -> list[str]:
    """The file's lines with ``feeds`` added at the end of its list, laid out like the
    entries already there."""
    _editable(feed_list)
    if not feed_list.entries:
        return _lines_with_first(feed_list, feeds)
    lines = list(feed_list.lines)
    nl = feed_list.newline
    last = feed_list.entries[-1]
    gap = [nl] if _blank_separated(feed_list) else []
    block: list[str] = []
    for feed in feeds:
        block += gap + render_entry(feed, last.dash_col, last.key_col - last.dash_col, nl)
    head, tail = lines[: last.last + 1], lines[last.last + 1 :]
    _ensure_newline(head, nl)
    return head + block + tail


def _lines_with_first(feed_list: FeedList, feeds: Sequence[NewFeed]) -> list[str]:
    """The file's lines with ``feeds`` as the first entries of its list: where the list
    is empty (``[]``, ``feeds:`` with nothing after it) or missing."""
    lines = list(feed_list.lines)
    nl = feed_list.newline
    # Under `feeds:` items are indented two columns; a feeds_from file's start at column 0.
    if feed_list.key is not None:
        dash_col = feed_list.key[1] + 2
    else:
        dash_col = 2 if feed_list.in_settings else 0
    block = []
    for index, feed in enumerate(feeds):
        if index and not feed_list.in_settings:
            block.append(nl)
        block += render_entry(feed, dash_col, 2, nl)
    if feed_list.seq is not None:  # an empty flow list: [] becomes the block list
        return _instead_of_empty_flow(feed_list, lines, block)
    if feed_list.key is not None:  # `feeds:` with nothing after it
        after = feed_list.key[0] + 1
        head = lines[:after]
        _ensure_newline(head, nl)
        return head + block + lines[after:]
    # No list at all: a settings file without `feeds:`, or an empty feeds file.
    _ensure_newline(lines, nl)
    if lines and not is_blank(lines[-1]):
        lines.append(nl)
    if feed_list.in_settings:
        return [*lines, f"feeds:{nl}", *block]
    return lines + block


def _instead_of_empty_flow(feed_list: FeedList, lines: list[str], block: list[str]) -> list[str]:
    """``lines`` with the empty flow list ``[]`` of the feed list replaced by ``block``."""
    line, col = feed_list.seq.lc.line, feed_list.seq.lc.col
    match = _match_at(
        _EMPTY_FLOW,
        feed_list,
        (line, col),
        "cannot find the empty list [] to replace; edit the file by hand",
    )
    text = lines[line]
    rest = text[match.end() :]
    replaced = text[:col].rstrip(" ") + (rest if rest.strip() else rest.strip(" "))
    if is_blank(replaced):
        return lines[:line] + block + lines[line + 1 :]
    if not replaced.endswith("\n"):
        replaced += feed_list.newline
    return [*lines[:line], replaced, *block, *lines[line + 1 :]]


def lines_without(feed_list: FeedList, entry: Entry) -> list[str]:
    _editable(feed_list)
    lines = feed_list.lines
    start, end = entry.first, entry.last + 1
    before = lines[start - 1] if start > 0 else None
    after = lines[end] if end < len(lines) else None
    key_line = feed_list.key[0] if feed_list.key else None
    more = entry is not feed_list.entries[-1]
    if after is not None and is_blank(after):
        # One blank line goes with the entry, unless it sets the list apart from what
        # follows it.
        if before is None or is_blank(before) or (start - 1 == key_line and more):
            end += 1
    elif after is None and before is not None and is_blank(before):
        start -= 1
    out = lines[:start] + lines[end:]
    if feed_list.in_settings and len(feed_list.entries) == 1 and feed_list.key is not None:
        line, col = feed_list.key
        colon = out[line].index(":", col)
        out[line] = out[line][: colon + 1] + " []" + out[line][colon + 1 :]
    return out


def lines_enabled(feed_list: FeedList, entry: Entry, enabled: bool) -> list[str]:
    _editable(feed_list)
    lines = list(feed_list.lines)
    item = entry.data
    word = "true" if enabled else "false"
    if "enabled" in item:
        line, col = item.lc.value("enabled")
        match = _match_at(
            _BOOL,
            feed_list,
            (line, col),
            "`enabled` is not written as a plain true/false; edit it by hand",
        )
        old = match.group(1)
        if old.isupper():
            word = word.upper()
        elif old[0].isupper():
            word = word.capitalize()
        lines[line] = lines[line][: match.start()] + word + lines[line][match.end() :]
        return lines
    keys = list(item)
    anchor = next((k for k in ("interval", "url", "name") if k in item), keys[-1])
    anchor_line = item.lc.key(anchor)[0]
    position = keys.index(anchor)
    if position + 1 < len(keys):
        at = item.lc.key(keys[position + 1])[0]
        while at - 1 > anchor_line and (is_blank(lines[at - 1]) or is_comment(lines[at - 1])):
            at -= 1
    else:
        at = entry.last + 1
    head = lines[:at]
    _ensure_newline(head, feed_list.newline)
    return [*head, " " * entry.key_col + f"enabled: {word}{feed_list.newline}", *lines[at:]]


def _match_at(
    pattern: re.Pattern[str], feed_list: FeedList, at: tuple[int, int], problem: str
) -> re.Match[str]:
    """``pattern`` matched in the file's text at (line, column), both 0-based; else
    ``problem``, an error at that line."""
    line, col = at
    match = pattern.match(feed_list.lines[line], col)
    if match is None:
        raise ConfigError(problem, feed_list.label, line + 1)
    return match


def encode_lines(feed_list: FeedList, lines: list[str]) -> bytes:
    text = "".join(lines)
    return ((UTF8_BOM if feed_list.bom else "") + text).encode("utf-8")


def verify_edit(feed_list: FeedList, data: bytes, items: list[Any]) -> None:
    """The edited text must parse to exactly the intended document."""
    text = data.decode("utf-8-sig")
    try:
        document = yaml_parser().load(text)
    except YAMLError as exc:
        raise ConfigError(
            f"the edit would not parse ({exc}); nothing was changed: edit the file by hand",
            feed_list.label,
        ) from exc
    if feed_list.in_settings:
        ok = as_plain(document) == _expected(feed_list, items)
    else:  # a file left with comments only reads as null: no feeds
        ok = (as_plain(document) or []) == items
    if not ok:
        raise ConfigError(
            "the file is laid out in a way this command cannot edit safely; nothing was "
            "changed: edit it by hand",
            feed_list.label,
        )


def write_atomic(path: Path, data: bytes, *, expect: bytes | None = None) -> None:
    """Replace the file's content with ``data`` in one step (a temporary file in the same
    folder, then a rename), keeping its mode and, where allowed, its owner and group.
    With ``expect``: refuse if the file no longer holds those bytes (edited meanwhile)."""
    target = Path(os.path.realpath(path))
    try:
        status = target.stat()
        if expect is not None and target.read_bytes() != expect:
            raise ConfigError(
                "the file changed while it was being edited; nothing was written, try again",
                str(path),
            )
        fd, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise ConfigError(f"cannot write the file: {exc.strerror}", str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, stat.S_IMODE(status.st_mode))
        with suppress(OSError):  # only root may give a file away; the mode still holds
            os.chown(temporary, status.st_uid, status.st_gid)
        os.replace(temporary, target)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temporary)
        raise ConfigError(f"cannot write the file: {exc.strerror}", str(path)) from exc
    with suppress(OSError):  # the rename itself survives a crash
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
