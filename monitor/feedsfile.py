"""Edit the feed lists of the settings in place: add, remove, pause and resume feeds.

Feeds live in the settings file's ``feeds:`` list and in the files named under
``feeds_from:`` (each one a YAML list of the same entries). These files are written by
hand and full of comments, so an edit changes only the lines of the entry concerned:

* the files are read with ruamel.yaml's round-trip parser, which says on which line and
  column every entry and key starts, and keeps ``${ENV}`` references as written;
* the edit is a splice of those lines; everything else stays byte for byte (dumping the
  whole document again would move or drop comments, re-indent lists and could fold long
  lines);
* the new text is parsed again and must hold exactly the intended entries, the file is
  replaced atomically (temporary file + rename, same mode and owner), and the whole
  settings are loaded again; if they no longer load, the old text is put back.

Where an entry starts and ends: it starts at its dash, together with the comment lines
right above it (no blank line between) that are not indented deeper than the dash; it
ends at its last line that is not blank and not such a comment. So removing an entry
removes the comment that documents it, and leaves a section's header comment (separated
by a blank line) alone.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from monitor.config import _FEED_NAME, Settings, feeds_from_paths, load_settings, parse_duration
from monitor.errors import ConfigError, ConfigErrors
from monitor.text import mask_url

_URL = re.compile(r"^https?://[^/\s]+")
_LINES = re.compile(r"[^\n]*\n|[^\n]+$")
_BOOL = re.compile(r"(true|True|TRUE|false|False|FALSE)(?=\s|#|$)")
_EMPTY_FLOW = re.compile(r"\[\s*\]")
_UTF8_BOM = "\ufeff"


@dataclass(frozen=True)
class NewFeed:
    """A feed to add, as it will be written."""

    name: str
    url: str
    #: As written in the file: 15m, 1h, 90s...
    interval: str = "15m"
    enabled: bool = True
    tags: tuple[str, ...] = ()


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


# --- reading ---------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _yaml() -> YAML:
    parser = YAML(typ="rt")
    parser.allow_duplicate_keys = False
    return parser


def _split(text: str) -> list[str]:
    return _LINES.findall(text)


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_comment(line: str) -> bool:
    return line.lstrip(" ").startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _parse(text: str, path: Path) -> Any:
    try:
        return _yaml().load(text)
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
    bom = raw.startswith(_UTF8_BOM.encode())
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "only UTF-8 files can be edited; convert the file to UTF-8 or edit it by hand",
            str(path),
        ) from exc
    return text, bom


def _flow(node: Any) -> bool:
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
            if not (_is_blank(text) or _is_comment(text)):
                break
    raise ConfigError(
        "cannot tell where this list item starts; edit it by hand", str(path), line + 1
    )


def _entries(seq: Any, lines: list[str], floor: int, ceiling: int, path: Path) -> list[Entry]:
    """The items of ``seq``; ``floor`` is the last line before the list may begin (the
    key line, or -1), ``ceiling`` the first line after it (the next key, or the end)."""
    out: list[Entry] = []
    starts = []
    flow = _flow(seq)
    for index in range(len(seq)):
        line, col = seq.lc.item(index)
        # In a flow list ([{...}, {...}]) items have no dash; such a list is not edited.
        dash, dash_col = (line, col) if flow else _dash(lines, line, col, path)
        starts.append((dash, dash_col, col))
    for index, (dash, dash_col, col) in enumerate(starts):
        stop = starts[index + 1][0] if index + 1 < len(starts) else ceiling
        last = dash if flow else stop - 1
        while last > dash and (
            _is_blank(lines[last])
            or (_is_comment(lines[last]) and _indent(lines[last]) <= dash_col)
        ):
            last -= 1
        first = dash
        low = out[-1].last if out else floor
        while (
            not flow
            and first - 1 > low
            and _is_comment(lines[first - 1])
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
                flow=_flow(item),
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
        if _flow(document):
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


# --- writing ---------------------------------------------------------------------------


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


def _plain(value: Any) -> Any:
    """ruamel's values as plain dicts, lists and scalars, for comparing documents."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _entry_dict(feed: NewFeed) -> dict[str, Any]:
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
    document = _plain(feed_list.document)
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
        any(_is_blank(line) for line in feed_list.lines[a.last + 1 : b.first])
        for a, b in pairwise(entries)
    )


def _editable(feed_list: FeedList) -> None:
    if feed_list.entries and _flow(feed_list.seq):
        raise ConfigError(
            "the feed list is written in flow style ([...]); write it as a block list "
            "(one `- name: ...` entry per feed) to edit it with this command",
            feed_list.label,
            feed_list.entries[0].line,
        )


def _lines_with(feed_list: FeedList, feeds: Sequence[NewFeed]) -> list[str]:
    _editable(feed_list)
    lines = list(feed_list.lines)
    nl = feed_list.newline
    where = feed_list.label
    if feed_list.entries:
        last = feed_list.entries[-1]
        gap = [nl] if _blank_separated(feed_list) else []
        block: list[str] = []
        for feed in feeds:
            block += gap + render_entry(feed, last.dash_col, last.key_col - last.dash_col, nl)
        head, tail = lines[: last.last + 1], lines[last.last + 1 :]
        _ensure_newline(head, nl)
        return head + block + tail
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
        line, col = feed_list.seq.lc.line, feed_list.seq.lc.col
        match = _EMPTY_FLOW.match(lines[line], col)
        if match is None:
            raise ConfigError(
                "cannot find the empty list [] to replace; edit the file by hand",
                where,
                line + 1,
            )
        text = lines[line]
        rest = text[match.end() :]
        replaced = text[:col].rstrip(" ") + (rest if rest.strip() else rest.strip(" "))
        if _is_blank(replaced):
            return lines[:line] + block + lines[line + 1 :]
        if not replaced.endswith("\n"):
            replaced += nl
        return [*lines[:line], replaced, *block, *lines[line + 1 :]]
    if feed_list.key is not None:  # `feeds:` with nothing after it
        after = feed_list.key[0] + 1
        head = lines[:after]
        _ensure_newline(head, nl)
        return head + block + lines[after:]
    # No list at all: a settings file without `feeds:`, or an empty feeds file.
    _ensure_newline(lines, nl)
    if lines and not _is_blank(lines[-1]):
        lines.append(nl)
    if feed_list.in_settings:
        return [*lines, f"feeds:{nl}", *block]
    return lines + block


def _lines_without(feed_list: FeedList, entry: Entry) -> list[str]:
    _editable(feed_list)
    lines = feed_list.lines
    start, end = entry.first, entry.last + 1
    before = lines[start - 1] if start > 0 else None
    after = lines[end] if end < len(lines) else None
    key_line = feed_list.key[0] if feed_list.key else None
    more = entry is not feed_list.entries[-1]
    if after is not None and _is_blank(after):
        # One blank line goes with the entry, unless it sets the list apart from what
        # follows it.
        if before is None or _is_blank(before) or (start - 1 == key_line and more):
            end += 1
    elif after is None and before is not None and _is_blank(before):
        start -= 1
    out = lines[:start] + lines[end:]
    if feed_list.in_settings and len(feed_list.entries) == 1 and feed_list.key is not None:
        line, col = feed_list.key
        colon = out[line].index(":", col)
        out[line] = out[line][: colon + 1] + " []" + out[line][colon + 1 :]
    return out


def _lines_enabled(feed_list: FeedList, entry: Entry, enabled: bool) -> list[str]:
    _editable(feed_list)
    lines = list(feed_list.lines)
    item = entry.data
    word = "true" if enabled else "false"
    if "enabled" in item:
        line, col = item.lc.value("enabled")
        match = _BOOL.match(lines[line], col)
        if match is None:
            raise ConfigError(
                "`enabled` is not written as a plain true/false; edit it by hand",
                feed_list.label,
                line + 1,
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
        while at - 1 > anchor_line and (_is_blank(lines[at - 1]) or _is_comment(lines[at - 1])):
            at -= 1
    else:
        at = entry.last + 1
    head = lines[:at]
    _ensure_newline(head, feed_list.newline)
    return [*head, " " * entry.key_col + f"enabled: {word}{feed_list.newline}", *lines[at:]]


def _encode(feed_list: FeedList, lines: list[str]) -> bytes:
    text = "".join(lines)
    return ((_UTF8_BOM if feed_list.bom else "") + text).encode("utf-8")


def _verify(feed_list: FeedList, data: bytes, items: list[Any]) -> None:
    """The edited text must parse to exactly the intended document."""
    text = data.decode("utf-8-sig")
    try:
        document = _yaml().load(text)
    except YAMLError as exc:
        raise ConfigError(
            f"the edit would not parse ({exc}); nothing was changed: edit the file by hand",
            feed_list.label,
        ) from exc
    if feed_list.in_settings:
        ok = _plain(document) == _expected(feed_list, items)
    else:  # a file left with comments only reads as null: no feeds
        ok = (_plain(document) or []) == items
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


# --- the edits -------------------------------------------------------------------------


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
    data = _encode(feed_list, lines)
    _verify(feed_list, data, items)
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
    if not _FEED_NAME.match(feed.name):
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
    lines = _lines_with(target, feeds)
    items = [_plain(e.data) for e in target.entries] + [_entry_dict(f) for f in feeds]
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
    from monitor.ruleset import load_rules

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
    lines = _lines_without(feed_list, entry)
    items = [_plain(e.data) for e in feed_list.entries if e is not entry]

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
    lines = _lines_enabled(feed_list, entry, enabled)
    items = [_plain(e.data) for e in feed_list.entries]
    items[entry.index] = {**items[entry.index], "enabled": enabled}

    def check(settings: Settings) -> str | None:
        if not any(f.name == name and f.enabled == enabled for f in settings.feeds):
            return f"feed {name!r} did not come out {'enabled' if enabled else 'paused'}"
        return None

    change.settings = _commit(settings_path, env, feed_list, lines, items, check)
    verb = "resumed" if enabled else "paused"
    change.done = [f"{verb} feed {name!r} ({where}: enabled: {str(enabled).lower()})"]
    return change
