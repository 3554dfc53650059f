"""Reading the feed lists for editing: which lines each entry of the settings file's
``feeds:`` and of each ``feeds_from`` file occupies.

The files are read with ruamel.yaml's round-trip parser, which says on which line and
column every entry and key starts, and keeps ``${ENV}`` references as written.

Where an entry starts and ends: it starts at its dash, together with the comment lines
right above it (no blank line between) that are not indented deeper than the dash; it
ends at its last line that is not blank and not such a comment. So removing an entry
removes the comment that documents it, and leaves a section's header comment (separated
by a blank line) alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from monitor.config.feeds import feeds_from_paths
from monitor.errors import ConfigError

_LINES = re.compile(r"[^\n]*\n|[^\n]+$")
UTF8_BOM = "\ufeff"


@dataclass
class Entry:
    """One item of a feed list and the lines it occupies (0-based, inclusive)."""

    index: int
    data: Any
    #: The raw values, ``${ENV}`` unexpanded; None when missing or not a string.
    name: str | None
    url: str | None
    #: The line of its dash, and the first line counting the comments above it.
    dash: int
    first: int
    last: int
    dash_col: int
    #: Column of its keys (block mappings).
    key_col: int
    flow: bool

    @property
    def line(self) -> int:
        """1-based line of the dash, for messages."""
        return self.dash + 1


@dataclass
class FeedList:
    """One file's feed list: the settings file's ``feeds:`` or a ``feeds_from`` file."""

    #: The file as named in messages (the settings path, or its folder / the feeds_from entry).
    path: Path
    in_settings: bool
    raw: bytes
    lines: list[str]
    newline: str
    bom: bool
    document: Any
    #: The list node; None when there is none (no `feeds:` key, null, an empty file).
    seq: Any
    entries: list[Entry]
    #: In the settings file: where the `feeds` key is (0-based line, column); None if absent.
    key: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        return str(self.path)

    def where(self, entry: Entry) -> str:
        return f"{self.path}:{entry.line}"


@dataclass
class FeedFiles:
    """The settings file and its ``feeds_from`` files, parsed for editing."""

    settings_path: Path
    lists: list[FeedList]

    def find(self, name: str) -> tuple[FeedList, Entry] | None:
        for feed_list in self.lists:
            for entry in feed_list.entries:
                if entry.name == name:
                    return feed_list, entry
        return None

    def names(self) -> list[str]:
        return [e.name for fl in self.lists for e in fl.entries if e.name is not None]

    def target(self, file: Path | None) -> FeedList:
        """The list ``file`` names (the settings file when None): the settings path, a
        ``feeds_from`` entry as written, or any path to one of those files."""
        if file is None:
            return self.lists[0]
        for feed_list in self.lists:
            if str(file) == str(feed_list.path) or _same_file(file, feed_list.path):
                return feed_list
        base = self.settings_path.parent
        for feed_list in self.lists[1:]:
            if _same_file(base / file, feed_list.path):
                return feed_list
        known = ", ".join(str(fl.path) for fl in self.lists)
        raise ConfigError(
            f"{file} is neither the settings file nor one of its feeds_from files "
            f"({known}); list it under `feeds_from:` first",
            str(self.settings_path),
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def yaml_parser() -> YAML:
    """ruamel.yaml's round-trip parser, refusing duplicate keys."""
    parser = YAML(typ="rt")
    parser.allow_duplicate_keys = False
    return parser


def _split(text: str) -> list[str]:
    return _LINES.findall(text)


def is_blank(line: str) -> bool:
    return not line.strip()


def is_comment(line: str) -> bool:
    return line.lstrip(" ").startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _parse(text: str, path: Path) -> Any:
    try:
        return yaml_parser().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"invalid YAML: {exc.problem or exc.context or 'syntax error'}",
            str(path),
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from exc
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", str(path)) from exc


def _decode(raw: bytes, path: Path) -> tuple[str, bool]:
    bom = raw.startswith(UTF8_BOM.encode())
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "only UTF-8 files can be edited; convert the file to UTF-8 or edit it by hand",
            str(path),
        ) from exc
    return text, bom


def is_flow(node: Any) -> bool:
    return bool(getattr(node, "fa", None) is not None and node.fa.flow_style())


def _dash(lines: list[str], line: int, col: int, path: Path) -> tuple[int, int]:
    """Line and column of the dash of the list item whose content starts at (line, col)."""
    before = lines[line][:col]
    if before.strip() == "-":
        return line, before.index("-")
    if not before.strip():  # the dash alone on a line above
        for at in range(line - 1, -1, -1):
            text = lines[at]
            if text.strip() == "-":
                return at, text.index("-")
            if not (is_blank(text) or is_comment(text)):
                break
    raise ConfigError(
        "cannot tell where this list item starts; edit it by hand", str(path), line + 1
    )


def _entries(seq: Any, lines: list[str], floor: int, ceiling: int, path: Path) -> list[Entry]:
    """The items of ``seq``; ``floor`` is the last line before the list may begin (the
    key line, or -1), ``ceiling`` the first line after it (the next key, or the end)."""
    out: list[Entry] = []
    starts = []
    flow = is_flow(seq)
    for index in range(len(seq)):
        line, col = seq.lc.item(index)
        # In a flow list ([{...}, {...}]) items have no dash; such a list is not edited.
        dash, dash_col = (line, col) if flow else _dash(lines, line, col, path)
        starts.append((dash, dash_col, col))
    for index, (dash, dash_col, col) in enumerate(starts):
        stop = starts[index + 1][0] if index + 1 < len(starts) else ceiling
        last = dash if flow else stop - 1
        while last > dash and (
            is_blank(lines[last]) or (is_comment(lines[last]) and _indent(lines[last]) <= dash_col)
        ):
            last -= 1
        first = dash
        low = out[-1].last if out else floor
        while (
            not flow
            and first - 1 > low
            and is_comment(lines[first - 1])
            and _indent(lines[first - 1]) <= dash_col
        ):
            first -= 1
        item = seq[index]
        name = item.get("name") if hasattr(item, "get") else None
        url = item.get("url") if hasattr(item, "get") else None
        out.append(
            Entry(
                index=index,
                data=item,
                name=str(name) if isinstance(name, str | int | float) else None,
                url=str(url) if isinstance(url, str) else None,
                dash=dash,
                first=first,
                last=last,
                dash_col=dash_col,
                key_col=col,
                flow=is_flow(item),
            )
        )
    return out


def read_feed_list(path: Path, *, in_settings: bool) -> FeedList:
    """Parse one file's feed list for editing."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", str(path)) from exc
    text, bom = _decode(raw, path)
    lines = _split(text)
    newline = "\r\n" if "\r\n" in (lines[0] if lines else "") else "\n"
    document = _parse(text, path)
    seq: Any = None
    key: tuple[int, int] | None = None
    floor, ceiling = -1, len(lines)
    if in_settings:
        if not hasattr(document, "lc") or not hasattr(document, "keys"):
            raise ConfigError("the settings file must be a mapping", str(path), 1)
        if is_flow(document):
            raise ConfigError(
                "the settings file is one flow mapping ({...}); edit it by hand", str(path), 1
            )
        if "feeds" in document:
            key = document.lc.key("feeds")
            seq = document["feeds"]
            floor = key[0]
            later = [document.lc.key(k)[0] for k in document if document.lc.key(k)[0] > floor]
            ceiling = min(later, default=len(lines))
    else:
        seq = document
    if seq is not None and not isinstance(seq, list):
        raise ConfigError(
            "the feed list must be a YAML list of {name, url, interval, enabled}",
            str(path),
            key[0] + 1 if key else 1,
        )
    entries = _entries(seq, lines, floor, ceiling, path) if seq is not None and seq else []
    return FeedList(path, in_settings, raw, lines, newline, bom, document, seq, entries, key)


def read_feed_files(settings_path: Path) -> FeedFiles:
    """The settings file's feed list, then each ``feeds_from`` file's, in that order."""
    first = read_feed_list(settings_path, in_settings=True)
    lists = [first]
    extra = feeds_from_paths(first.document.get("feeds_from") or [], settings_path.parent)
    for path in extra or []:
        lists.append(read_feed_list(path, in_settings=False))
    return FeedFiles(settings_path, lists)
