"""Feed bytes -> normalised :class:`Article` records. feedparser lives here (and in
:mod:`monitor.rss`, which reads plain RSS 2.0 exactly as feedparser would, ten times
faster) only.

Two layers:

:func:`parse_feed`
    The pure, in-process parser: RSS / Atom through feedparser (plain RSS 2.0 through
    monitor.rss), JSON Feed 1.0 / 1.1 through :mod:`json`. It is always given the bytes
    and the response headers, never a URL or a path, and nothing in a feed is ever
    fetched: feedparser gets a ``BytesIO`` (given plain bytes it would first try
    ``open(content)``, so a body of ``/etc/passwd`` or ``/dev/zero`` would read that
    local file), expat runs with external entities off (no
    external DTD, entity or parameter entity is loaded; XInclude and ``xml-stylesheet``
    are not processed at all), and feeds that declare entities expanding to more than
    :data:`MAX_ENTITY_EXPANSION` bytes are refused before feedparser sees them: feedparser
    falls back to its lenient parser when expat refuses a "quadratic blowup", and that
    parser expands the entities without any bound (100 KB entity x 20,000 references =
    a 2 GB title, 6 GB of RAM and 40 s of CPU).

    Every string is sanitised before it leaves: control characters (C0 but tab/newline,
    DEL, C1), lone surrogates and non-characters removed, HTML turned into text, every
    field cut to a limit (``MAX_TITLE`` ... ``MAX_LINK``), only http(s) links kept
    (relative ones resolved against the feed URL, never with its credentials), long ids
    hashed, implausible dates dropped, items without id or link given a content-hash id.

:class:`ParsePool`
    The same function in isolated worker processes, so a hostile or pathological feed
    can cost the daemon one feed's poll, never its memory or its event loop.

    Design: a hand-rolled pool of ``multiprocessing.Process`` workers, each with its own
    ``Pipe``. ``concurrent.futures.ProcessPoolExecutor`` is not used because one worker
    dying marks the whole executor broken and fails every pending future; here a dead
    worker costs exactly the parse it was running. Workers are started with the
    "forkserver" method: a fresh single-threaded server process, with feedparser
    preloaded, forks each worker, so no copy of the daemon's threads, event loop, sockets
    or SQLite handles ever exists in a worker, and a new worker answers its first parse
    in about 13 ms (spawn: about 90 ms, a new interpreter importing feedparser; the first
    forkserver worker of a process: 130-230 ms, starting the server). "spawn" where
    forkserver is not available. A warm worker adds about 1 ms (4-6 %) to the 22 ms parse
    of a 50-item feed (``benchmarks/parse_bench.py``). A worker's resident memory is
    25-60 MiB, mostly shared with the forkserver (which also preloads the program's main
    module, as forkserver does by default, so that workers do not import it each).

    Each worker caps its own address space (``RLIMIT_AS`` = ``memory_limit``; a
    ``MemoryError`` makes it exit with :data:`EXIT_OUT_OF_MEMORY`), its CPU time per parse
    (``RLIMIT_CPU``, the deadline plus a margin: a second guard that works even if the
    daemon is frozen or gone) and core dumps (none). The parent enforces the wall-clock
    deadline: a parse that has not answered in ``deadline`` seconds gets its worker
    SIGKILLed; a worker that died is detected by end-of-file on its pipe. Either way the
    worker is replaced and :meth:`ParsePool.parse` raises :class:`FeedError` saying what
    happened; parses on other workers never notice.

    The daemon runs its workers at a lower CPU priority (``nice``, ``parse.nice``): when
    every core is busy (a first poll of many feeds), the loop that stores and alerts is
    what everything waits for, and a worker preempting it only makes the parsed feeds
    queue. In the 1,000-feed benchmark, nice 10 made the first cycle 10-15% shorter.

    The pipe exchange of one parse is blocking, so it runs on a thread of the pool's own
    ``ThreadPoolExecutor`` with exactly ``workers`` threads: at most ``workers`` parses
    run at once and the rest wait in that executor's queue; the event loop never blocks,
    not even while 15 MB of feed are written to a pipe. Workers are started lazily, on the
    first parses. Articles come back as pickles of the frozen dataclasses; a
    :class:`FeedError` comes back as its message (exceptions with extra constructor
    arguments do not survive pickling).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from itertools import chain, islice
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import TYPE_CHECKING, Any, AnyStr
from urllib.parse import urljoin, urlsplit, urlunsplit

import feedparser

from monitor.errors import FeedError
from monitor.models import Article, Matched
from monitor.rss import read_rss
from monitor.stories import fingerprint
from monitor.text import mask_url, spaced, words, words_hash

if TYPE_CHECKING:  # a worker gets its Matcher pickled; this module never builds one
    from monitor.match import Matcher

log = logging.getLogger(__name__)

# --- limits ------------------------------------------------------------------------------

#: Longest title, in characters; longer ones are cut.
MAX_TITLE = 1_000
#: Longest summary and longest content.
MAX_FIELD = 100_000
MAX_AUTHOR = 500
MAX_LINK = 2_048
MAX_CATEGORY = 200
MAX_CATEGORIES = 50
#: The title of an item that has none.
UNTITLED = "(untitled)"
#: Ids (guid / link) longer than this are replaced by their SHA-256.
MAX_UID = 512
#: Items read from one document; the rest are ignored (feeds list the newest first).
MAX_ENTRIES = 10_000
#: Bytes that declared XML entities may add to a document before it is refused.
MAX_ENTITY_EXPANSION = 1_000_000
#: Expanding entity declarations one document may make before it is refused.
MAX_ENTITIES = 64
#: Dates outside these years are treated as missing rather than trusted.
MIN_YEAR, MAX_YEAR = 1990, 2100

# C0 controls but tab / newline / carriage return, DEL, C1 controls, lone surrogates and
# the non-characters U+FFFE / U+FFFF: never useful in text, and surrogates cannot even be
# stored (SQLite wants valid UTF-8).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_BLOCK_TAGS = frozenset(
    "p br div li ul ol h1 h2 h3 h4 h5 h6 blockquote tr table pre section article".split()
)
#: Elements whose text is not text (feedparser's sanitiser drops these with their content).
_DROPPED_TAGS = frozenset(("script", "style", "applet"))
_JSON_TYPES = ("application/feed+json", "application/json")
_FIRST_CHAR = re.compile(rb"(?:\xef\xbb\xbf)?\s*(\S)")
_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/")
# feedparser's own view of an entity declaration (feedparser.sanitizer): entities are
# only looked for before the first element, one declaration per line.
_FIRST_ELEMENT = re.compile(rb"<\w")
_ENTITY_DECL = re.compile(rb"^\s*<!ENTITY([^>]*?)>", re.MULTILINE)
_SAFE_ENTITY = re.compile(rb'\s+(\w+)\s+"(&#\w+;|[^&"]*)"')
# Numeric character references worth a closer look: control characters, and anything
# with five or more decimal / four or more hex digits (surrogates, beyond U+10FFFF...).
_CHARREF = re.compile(
    rb"&#(?:0*([0-9]{5,}|1[0-9]|2[0-9]|3[01]|[0-9])|[xX]0*([0-9a-fA-F]{4,}|1[0-9a-fA-F]|[0-9a-fA-F]));"
)
_CHARREF_TEXT = re.compile(_CHARREF.pattern.decode("ascii"))
_ENTITY_MARKERS = (
    b"ENTITY",
    "ENTITY".encode("utf-16-le"),
    "ENTITY".encode("utf-16-be"),
    "ENTITY".encode("utf-32-le"),
    "ENTITY".encode("utf-32-be"),
)


# --- text --------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """HTML to plain text: keeps text, turns block tags into line breaks, drops scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _DROPPED_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_TAGS and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _tidy(text: str, limit: int, one_line: bool) -> str:
    text = _CONTROL.sub("", text)
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return ("\n" if not one_line else " ").join(line for line in lines if line)[:limit]


# A start tag with a plain name and well-formed attributes, or an end tag with a plain name:
# the tags HTMLParser is sure to read exactly as this regex does.
_PLAIN_TAG = re.compile(
    r"<(?:([a-zA-Z][a-zA-Z0-9]*)"
    r"""(?:\s+[a-zA-Z_][-a-zA-Z0-9_.]*(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'=<>`]+))?)*"""
    r"\s*(/?)|/([a-zA-Z][a-zA-Z0-9]*)\s*)>"
)
#: Elements whose content HTMLParser (in some Python version) reads as raw text.
_RAW_TEXT_TAGS = _DROPPED_TAGS | frozenset(
    "title textarea xmp iframe noembed noframes noscript plaintext".split()
)


def _plain_html_text(value: str) -> str | None:
    """What _TextExtractor makes of ``value``, when ``value`` holds only text, character
    references and plain tags (most feed HTML); None otherwise. Five times faster than
    HTMLParser; tests check that both agree."""
    parts: list[str] = []
    pos = 0
    for m in _PLAIN_TAG.finditer(value):
        text = value[pos : m.start()]
        if "<" in text:
            return None  # a "<" that is not a plain tag: let HTMLParser decide
        parts.append(unescape(text) if "&" in text else text)
        start, closing, end = m.groups()
        tag = (start or end).lower()
        if tag in _RAW_TEXT_TAGS:
            return None
        if tag in _BLOCK_TAGS:
            parts.append("\n\n" if closing else "\n")  # <br/>: a start and an end tag
        pos = m.end()
    text = value[pos:]
    if "<" in text:
        return None
    parts.append(unescape(text) if "&" in text else text)
    return "".join(parts)


def html_to_text(value: str, limit: int = MAX_FIELD, *, one_line: bool = False) -> str:
    """Plain text of an HTML fragment, whitespace tidied, control characters removed,
    at most ``limit`` characters (on one line if ``one_line``)."""
    if "<" not in value and "&" not in value:
        return _tidy(value, limit, one_line)
    text = _plain_html_text(value)
    return _tidy(_parsed_html_text(value) if text is None else text, limit, one_line)


def _parsed_html_text(value: str) -> str:
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    return "".join(parser.parts)


def plain_text(value: str, limit: int = MAX_FIELD, *, one_line: bool = False) -> str:
    """Text that is already plain (no HTML to remove): only tidied and cut."""
    return _tidy(value, limit, one_line)


def _html(value: Any, limit: int, *, one_line: bool = False) -> str:
    return html_to_text(value, limit, one_line=one_line) if isinstance(value, str) else ""


def _plain(value: Any, limit: int, *, one_line: bool = False) -> str:
    return plain_text(value, limit, one_line=one_line) if isinstance(value, str) else ""


def _without_credentials(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _link(value: Any, base: str) -> str:
    """An absolute http(s) URL, or "" (javascript:, data:, mailto:... links are dropped)."""
    if not isinstance(value, str):
        return ""
    # Line breaks inside a link are wrapping; a space is a space.
    raw = _CONTROL.sub("", value[: MAX_LINK * 4]).strip()
    raw = re.sub(r"[\r\n\t]+", "", raw).replace(" ", "%20")
    if not raw:
        return ""
    try:
        absolute = urljoin(base, raw) if base else raw
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return ""
    if scheme not in ("http", "https"):
        return ""
    return absolute[:MAX_LINK]


def _uid(raw: str) -> str:
    raw = _CONTROL.sub("", raw).strip()
    if len(raw) > MAX_UID:
        return "sha256:" + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()
    return raw


def _sane(stamp: datetime) -> datetime | None:
    return stamp if MIN_YEAR <= stamp.year <= MAX_YEAR else None


def _date(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict.get("updated_parsed") falls back to published_parsed,
        # with a DeprecationWarning.
        parsed = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
        if parsed:
            try:
                stamp = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError, TypeError):
                continue
            if _sane(stamp):
                return stamp
    return None


def _json_date(value: Any) -> datetime | None:
    """An RFC 3339 date (a JSON Feed's date_published / date_modified), in UTC."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    try:
        return _sane(stamp.astimezone(UTC))
    except (OverflowError, ValueError):
        return None


def _categories(terms: Iterable[Any]) -> tuple[str, ...]:
    cleaned = (_html(t, MAX_CATEGORY, one_line=True) for t in terms)
    return tuple(dict.fromkeys(c for c in cleaned if c))[:MAX_CATEGORIES]


def _article(
    feed: str,
    *,
    guid: str,
    title: str,
    link: str,
    summary: str,
    body: str,
    author: str,
    categories: tuple[str, ...],
    published: datetime | None,
) -> Article:
    if body == summary:
        body = ""
    parts = [words(title), words(summary), words(body)]
    # What Matcher.scan would make of title and content ("summary\ncontent"): the same
    # words, as normalize separates them.
    named = parts[0] if title else words(UNTITLED)
    normalized = (spaced(named), spaced(chain(parts[1], parts[2])))
    digest = words_hash(parts)
    uid = _uid(guid) or _uid(link) or "hash:" + digest
    return Article(
        feed=feed,
        uid=uid,
        title=title or UNTITLED,
        link=link,
        summary=summary,
        content=body,
        author=author,
        categories=categories,
        published=published,
        content_hash=digest,
        fingerprint=fingerprint(chain.from_iterable(parts)),
        normalized=normalized,
    )


# --- entry point -------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""


def _is_json(content: bytes, content_type: str) -> bool:
    first = _FIRST_CHAR.match(content)
    start = first.group(1) if first else b""
    if content_type.split(";")[0].strip().lower() in _JSON_TYPES:
        return start != b"<"  # an RSS document served with the wrong type
    if start != b"{":
        return False
    # Sniff the version without parsing: it is usually one of the first few members.
    return re.search(rb'"version"\s*:\s*"https?://jsonfeed\.org/version/', content) is not None


def parse_feed(feed: str, url: str, content: bytes, headers: Mapping[str, str]) -> list[Article]:
    """Parse feed bytes into articles; raise :class:`FeedError` if it is not a feed at all.

    ``url`` is the address the bytes came from: it names the feed in errors (credentials
    masked) and resolves relative links (credentials removed).
    """
    shown = mask_url(url)
    base = _without_credentials(url)
    location = _header(headers, "content-location")
    if location:
        with contextlib.suppress(ValueError):
            base = _without_credentials(urljoin(base, location))
    content_type = _header(headers, "content-type")
    if _is_json(content, content_type):
        return _parse_json(feed, shown, base, content)
    return _parse_xml(feed, shown, base, content, headers, content_type)


# --- RSS / Atom --------------------------------------------------------------------------


# Byte patterns of the start of a UTF-32 / UTF-16 document (BOM or "<"), longest first.
_WIDE_ENCODINGS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)


def _wide_encoding(content: bytes) -> str | None:
    """UTF-16 or UTF-32 (which), if the document starts as one does."""
    for start, encoding in _WIDE_ENCODINGS:
        if content.startswith(start):
            return encoding
    return None


def _as_utf8(content: bytes) -> bytes:
    """The document in UTF-8 if it is in UTF-16 or UTF-32 (as feedparser converts it)."""
    encoding = _wide_encoding(content)
    if encoding is None:
        return content
    return content.decode(encoding, "replace").encode("utf-8", "replace")


def _entity_expansion(content: bytes) -> tuple[int, int]:
    """(bytes the declared entities would add, number of expanding entities), as
    feedparser's lenient parser would expand them."""
    if not any(marker in content for marker in _ENTITY_MARKERS):
        return 0, 0
    data = _as_utf8(content)
    found = _FIRST_ELEMENT.search(data)
    head = data[: found.start()] if found else data
    body = data[len(head) :]
    entities: dict[bytes, int] = {}
    for declaration in _ENTITY_DECL.findall(head):
        m = _SAFE_ENTITY.match(declaration)
        if m and len(m.group(2)) > len(m.group(1)) + 2:
            entities[m.group(1)] = len(m.group(2)) - len(m.group(1)) - 2
    if len(entities) > MAX_ENTITIES:
        return 0, len(entities)
    total = 0
    for name, growth in entities.items():
        total += body.count(b"&" + name + b";") * growth
    return total, len(entities)


def _xml_char(value: int) -> bool:
    """Whether XML 1.0 allows this character (and Python can encode it)."""
    return (
        value in (0x9, 0xA, 0xD)
        or 0x20 <= value <= 0xD7FF
        or 0xE000 <= value <= 0xFFFD
        or 0x10000 <= value <= 0x10FFFF
    )


def _fix_charref(m: re.Match[AnyStr]) -> AnyStr:
    decimal, hexadecimal = m.group(1), m.group(2)
    digits = decimal if decimal is not None else hexadecimal
    if len(digits) <= 8 and _xml_char(int(digits, 10 if decimal is not None else 16)):
        return m.group(0)
    return m.group(0)[:0]


def _repair_charrefs(content: bytes) -> bytes:
    """Drop character references to characters XML forbids: expat refuses the whole
    document for one, and feedparser's fallback parser then crashes on a surrogate
    (``&#xD800;``: UnicodeEncodeError) or a number beyond U+10FFFF (ValueError). A
    UTF-16 or UTF-32 document is repaired as text and encoded back as it was."""
    encoding = _wide_encoding(content)
    if encoding is None:
        return _CHARREF.sub(_fix_charref, content)
    if "&#".encode(encoding) not in content:
        return content
    text = content.decode(encoding, "replace")
    return _CHARREF_TEXT.sub(_fix_charref, text).encode(encoding, "replace")


def _parse_xml(
    feed: str,
    shown: str,
    base: str,
    content: bytes,
    headers: Mapping[str, str],
    content_type: str,
) -> list[Article]:
    growth, declared = _entity_expansion(content)
    if growth > MAX_ENTITY_EXPANSION or declared > MAX_ENTITIES:
        what = (
            f"{declared} entity declarations"
            if declared > MAX_ENTITIES
            else f"entities expanding to {growth / 1e6:.1f} MB"
        )
        raise FeedError(
            shown,
            f"the feed declares {what} (an 'XML bomb'); refused without parsing",
        )
    content = _repair_charrefs(content)
    # Plain RSS 2.0 is read straight from expat, exactly as feedparser would read it
    # (monitor.rss; about ten times faster); anything else goes to feedparser.
    entries: Iterable[Any] | None = read_rss(content, dict(headers))
    if entries is None:
        entries = _feedparser_entries(shown, content, headers, content_type)
    articles = []
    for entry in islice(entries, MAX_ENTRIES):
        if isinstance(entry, Mapping):
            articles.append(_entry_article(feed, base, entry))
    return articles


def _feedparser_entries(
    shown: str, content: bytes, headers: Mapping[str, str], content_type: str
) -> list[Any]:
    try:
        # feedparser's own HTML sanitising and relative-URI rewriting are off: every field
        # is turned into plain text by html_to_text (which drops what the sanitiser would:
        # script, style, applet and their text) and only entry links are kept, resolved by
        # _link. They were half of feedparser's time (31 -> 16 ms for a 50-item feed).
        parsed = feedparser.parse(
            io.BytesIO(content),
            response_headers=dict(headers),
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except MemoryError:
        raise
    except RecursionError as exc:
        raise FeedError(shown, "the document is nested too deeply to parse") from exc
    except Exception as exc:  # feedparser is meant to catch everything itself
        raise FeedError(shown, f"feedparser failed ({type(exc).__name__}: {exc})") from exc
    # feedparser sets `version` ("rss20", "atom10"...) only when it recognised a feed; an
    # HTML page parses "successfully" into an empty feed, so that is the test to make.
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        detail = f" ({type(reason).__name__})" if reason else ""
        raise FeedError(
            shown,
            f"not an RSS or Atom feed (nor a JSON Feed){detail}, "
            f"content type {content_type or 'unknown'}; "
            "check that the URL points at the feed, not at a web page",
        )
    return list(parsed.entries)


def _entry_article(feed: str, base: str, entry: Mapping[str, Any]) -> Article:
    """The article of one feedparser entry (or monitor.rss's dict of the same)."""
    bodies = [c.get("value") for c in entry.get("content") or () if isinstance(c, Mapping)]
    tags = [t.get("term") for t in entry.get("tags") or () if isinstance(t, Mapping)]
    guid = entry.get("id")
    link = entry.get("link")
    # An RSS guid stands in for a missing link (isPermaLink); used only if a full URL.
    guid_link = bool(entry.get("guidislink")) and link == guid
    return _article(
        feed,
        guid=guid if isinstance(guid, str) else "",
        title=_html(entry.get("title"), MAX_TITLE, one_line=True),
        link=_link(link, "" if guid_link else base),
        summary=_html(entry.get("summary"), MAX_FIELD),
        body=html_to_text("\n".join(b for b in bodies if isinstance(b, str))),
        author=_html(entry.get("author"), MAX_AUTHOR, one_line=True),
        categories=_categories(tags),
        published=_date(entry),
    )


# --- JSON Feed ---------------------------------------------------------------------------


def _names(authors: Any) -> str:
    """JSON Feed 1.1 ``authors`` (a list of objects) or 1.0 ``author`` (one object)."""
    if isinstance(authors, Mapping):
        authors = [authors]
    if not isinstance(authors, list):
        return ""
    names = (
        _plain(a.get("name"), MAX_AUTHOR, one_line=True)
        for a in authors[:20]
        if isinstance(a, Mapping)
    )
    return ", ".join(n for n in names if n)[:MAX_AUTHOR]


def _json_id(value: Any) -> str:
    # The spec says string; numbers are common enough to accept.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _json_int(text: str) -> int | str:
    """A JSON integer, or its digits if Python refuses to read that many (over 4,300: one
    such id must not cost the whole feed; as text, it is hashed like any long id)."""
    return int(text) if len(text) <= 4000 else text


def _parse_json(feed: str, shown: str, base: str, content: bytes) -> list[Article]:
    try:
        try:
            document = json.loads(content, parse_int=_json_int)
        except UnicodeDecodeError:
            document = json.loads(content.decode("utf-8", "replace"), parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise FeedError(
            shown,
            f"invalid JSON Feed: not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})",
        ) from exc
    except RecursionError as exc:
        raise FeedError(shown, "invalid JSON Feed: nested too deeply") from exc
    except ValueError as exc:
        raise FeedError(shown, f"invalid JSON Feed: {str(exc)[:200]}") from exc
    if not isinstance(document, dict):
        raise FeedError(
            shown,
            f"invalid JSON Feed: the document is a JSON {type(document).__name__}, "
            'not an object with "version" and "items"',
        )
    version = document.get("version")
    if not isinstance(version, str) or not _JSON_FEED_VERSION.match(version):
        raise FeedError(
            shown,
            'not a JSON Feed: "version" should start with https://jsonfeed.org/version/ '
            f"but is {str(version)[:80]!r}; check that the URL points at the feed",
        )
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedError(
            shown,
            f'invalid JSON Feed: "items" must be a list, not {type(items).__name__}',
        )
    home = document.get("home_page_url")
    feed_base = base or (home if isinstance(home, str) else "")
    feed_author = _names(document.get("authors") or document.get("author"))
    articles = []
    for item in items[:MAX_ENTRIES]:
        if not isinstance(item, dict):
            continue
        html = item.get("content_html")
        text = item.get("content_text")
        tags = item.get("tags")
        articles.append(
            _article(
                feed,
                guid=_json_id(item.get("id")),
                title=_plain(item.get("title"), MAX_TITLE, one_line=True),
                link=_link(item.get("url"), feed_base)
                or _link(item.get("external_url"), feed_base),
                summary=_plain(item.get("summary"), MAX_FIELD),
                body=html_to_text(html) if isinstance(html, str) else _plain(text, MAX_FIELD),
                author=_names(item.get("authors") or item.get("author")) or feed_author,
                categories=_categories(tags[:1000] if isinstance(tags, list) else ()),
                published=(
                    _json_date(item.get("date_published")) or _json_date(item.get("date_modified"))
                ),
            )
        )
    return articles


# --- isolated workers --------------------------------------------------------------------

#: Exit status of a worker that ran out of memory (caught a MemoryError).
EXIT_OUT_OF_MEMORY = 75
#: CPU seconds a parse may use beyond the deadline before the kernel stops it.
_CPU_MARGIN = 2

ParseTarget = Callable[[str, str, bytes, Mapping[str, str]], list[Article]]
#: What a worker is to match the articles it parsed with: (the matcher's token, the
#: matcher itself if the worker may not have it yet, ids of articles not to match).
_Matching = tuple[int, "Matcher | None", frozenset[str]]


def _limit(which: int, soft: int, what: str) -> None:
    """Lower a soft resource limit of this process (never above the hard limit). A
    sandbox that forbids it (seccomp) is reported on stderr, not fatal."""
    try:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        if what:
            print(
                f"news-monitor parse worker {os.getpid()}: could not limit {what} ({exc}); "
                "parsing without that limit",
                file=sys.stderr,
                flush=True,
            )


def _worker_main(
    conn: Connection, target: ParseTarget, memory_limit: int | None, cpu_budget: int, nice: int
) -> None:
    """The loop of a worker process: receive (feed, url, content, headers, matching),
    reply with ("ok", articles), ("ok", articles with their hits) when asked to match,
    ("feed-error", message) or ("error", traceback); exit on EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    _limit(resource.RLIMIT_CORE, 0, "core dumps")
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:  # a sandbox that filters setpriority(), say
            print(
                f"news-monitor parse worker {os.getpid()}: could not lower its CPU priority "
                f"({exc}); parsing at the daemon's",
                file=sys.stderr,
                flush=True,
            )
    if memory_limit:
        _limit(resource.RLIMIT_AS, memory_limit, "memory")
    matchers: dict[int, Matcher] = {}  # the last one sent, by token
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _limit(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime) + cpu_budget, "")
        status: str
        value: Any
        try:
            status, value = "ok", _parse_request(target, request, matchers)
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        except FeedError as exc:
            status, value = "feed-error", exc.message
        except BaseException as exc:  # a bug: say which, keep the worker
            status, value = "error", "".join(traceback.format_exception(exc))
        del request
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            conn.send((status, value, peak))
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        except (OSError, ValueError):
            return  # the parent is gone
        except Exception as exc:  # the articles did not pickle: a bug
            conn.send(("error", f"the reply could not be sent: {exc!r}", peak))
        del value


def _parse_request(
    target: ParseTarget,
    request: tuple[str, str, bytes, dict[str, str], _Matching | None],
    matchers: dict[int, Matcher],
) -> list[Article] | Matched:
    feed, url, content, headers, matching = request
    if matching is None:
        return target(feed, url, content, headers)
    token, sent, known = matching
    if sent is not None:  # kept even if this feed fails to parse
        matchers.clear()
        matchers[token] = sent
    matcher = matchers[token]  # the pool sends it whenever this worker may lack it
    articles = target(feed, url, content, headers)
    # The normalised texts were for matching here: not sent back.
    return [
        (replace(a, normalized=None), None if a.uid in known else matcher.match(a))
        for a in articles
    ]


def default_context() -> BaseContext:
    """forkserver (with feedparser preloaded in the server) where available, else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # '__main__' is forkserver's default, kept so workers do not each re-import the
        # program's main module; this module brings feedparser. No effect once the
        # process's forkserver is running (it is shared by every forkserver user).
        context.set_forkserver_preload(["__main__", __name__, "monitor.match"])
        return context
    return multiprocessing.get_context("spawn")


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    parses: int = 0
    #: The token of the matcher this worker was last sent.
    matcher: int | None = None


@dataclass(eq=False)
class _Job:
    #: The worker running the job, once it has one.
    worker: _Worker | None = None
    #: Nobody waits for the result any more (the awaiting task was cancelled).
    abandoned: bool = False


@dataclass
class PoolStats:
    """Counters for logs and tests."""

    started: int = 0
    parses: int = 0
    timeouts: int = 0
    out_of_memory: int = 0
    crashes: int = 0
    #: Highest peak resident set size any worker reported, in bytes.
    peak_rss: int = 0
    #: Seconds the last ``Process.start()`` took (forkserver: the worker is then ready;
    #: spawn: it still has to import feedparser).
    last_start: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class ParsePool:
    """:func:`parse_feed` in isolated worker processes with a memory cap and a deadline.

    ``workers`` parses run at once (the rest queue); ``deadline`` is wall-clock seconds
    per parse; ``memory_limit`` bytes of address space per worker (``None``: no cap);
    ``nice``: how much lower the workers' CPU priority is than this process's.
    ``target`` replaces :func:`parse_feed` (tests); it must be importable by name.
    Usable as a context manager; :meth:`close` ends every worker (an unclosed pool can
    hold up interpreter exit by up to ``deadline`` seconds while a parse is running).
    """

    def __init__(
        self,
        workers: int = os.cpu_count() or 1,
        *,
        deadline: float = 20.0,
        memory_limit: int | None = 512 * 2**20,
        nice: int = 0,
        target: ParseTarget = parse_feed,
        context: BaseContext | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not deadline > 0:
            raise ValueError("deadline must be positive")
        self.workers = workers
        self.deadline = deadline
        self.memory_limit = memory_limit
        self.nice = nice
        self.stats = PoolStats()
        self._target = target
        self._context = context or default_context()
        self._cpu_budget = math.ceil(deadline) + _CPU_MARGIN
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parse-pool")

    # -- public API

    async def parse(
        self, feed: str, url: str, content: bytes, headers: Mapping[str, str]
    ) -> list[Article]:
        """``parse_feed(feed, url, content, headers)`` in a worker; :class:`FeedError` if
        the feed is not one, or if its parse timed out, ran out of memory or crashed."""
        return await self._submit(feed, url, content, headers)  # type: ignore[return-value]

    async def parse_matched(
        self,
        feed: str,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        matcher: Matcher,
        known: frozenset[str] = frozenset(),
    ) -> Matched:
        """:meth:`parse`, and each article matched against ``matcher`` in the worker too,
        but for those whose uid is in ``known`` (stored already: their hits are None).
        A worker is sent the matcher once (pickled as its rules, and compiled there) and
        keeps it until it is sent another: matching moves off the daemon's loop at the
        cost of one compile per worker and ruleset."""
        return await self._submit(  # type: ignore[return-value]
            feed, url, content, headers, (matcher, known)
        )

    async def _submit(
        self,
        feed: str,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        matching: tuple[Matcher, frozenset[str]] | None = None,
    ) -> list[Article] | Matched:
        job = _Job()
        with self._lock:
            if self._closed:
                raise FeedError(mask_url(url), "the parser pool is closed (shutting down)")
            future = self._executor.submit(
                self._run, job, (feed, url, content, dict(headers)), matching
            )
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    def close(self) -> None:
        """End every worker: idle ones exit on end-of-file, busy ones are killed (their
        parses raise FeedError). Waits for them; idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for worker in busy:
            _kill(worker)  # its thread sees end-of-file and cleans up
        for worker in idle:
            _stop(worker)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def busy(self) -> int:
        """How many workers are running a parse right now."""
        with self._lock:
            return len(self._busy)

    @property
    def processes(self) -> list[BaseProcess]:
        """The live worker processes (for tests and status)."""
        with self._lock:
            return [w.process for w in (*self._idle, *self._busy)]

    # -- internals (run on the pool's threads)

    def _start_worker(self) -> _Worker:
        began = time.perf_counter()
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child, self._target, self.memory_limit, self._cpu_budget, self.nice),
            name="news-monitor-parse",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        with self.stats._lock:
            self.stats.started += 1
            self.stats.last_start = time.perf_counter() - began
        log.debug("parse_worker_started pid=%s seconds=%.3f", process.pid, self.stats.last_start)
        return _Worker(process, parent)

    def _acquire(self, job: _Job, shown: str) -> _Worker:
        lost: list[_Worker] = []
        try:
            with self._lock:
                if self._closed:
                    raise FeedError(shown, "the parser pool is closed (shutting down)")
                while self._idle:
                    worker = self._idle.pop()
                    if not worker.process.is_alive():
                        lost.append(worker)  # died while idle: killed from outside
                        continue
                    self._busy.add(worker)
                    job.worker = worker
                    return worker
        finally:
            for worker in lost:
                log.warning(
                    "parse_worker_lost pid=%s exit=%s (died while idle; replaced)",
                    worker.process.pid,
                    _reap(worker),
                )
                _stop(worker)
        try:
            worker = self._start_worker()
        except OSError as exc:
            raise FeedError(shown, f"could not start a parser process ({exc})") from exc
        with self._lock:
            if self._closed:
                _stop(worker)
                raise FeedError(shown, "the parser pool is closed (shutting down)")
            self._busy.add(worker)
            job.worker = worker
            return worker

    def _release(self, worker: _Worker, keep: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if keep and not self._closed:
                self._idle.append(worker)
                return
        _stop(worker)

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            job.abandoned = True
            worker = job.worker
        if worker is not None:
            _kill(worker)  # the thread waiting on it sees end-of-file at once

    def _run(
        self,
        job: _Job,
        request: tuple[str, str, bytes, dict[str, str]],
        matching: tuple[Matcher, frozenset[str]] | None,
    ) -> list[Article] | Matched:
        shown = mask_url(request[1])
        worker = self._acquire(job, shown)
        if job.abandoned:
            self._release(worker, keep=True)
            raise FeedError(shown, "the parse was cancelled")
        limit = time.monotonic() + self.deadline
        reply: Any = None
        timed_out = False
        sent: _Matching | None = None
        if matching is not None:
            matcher, known = matching
            token = matcher.token
            sent = (token, None if worker.matcher == token else matcher, known)
        try:
            worker.conn.send((*request, sent))
            del request
            if worker.conn.poll(max(0.0, limit - time.monotonic())):
                reply = worker.conn.recv()
            else:
                timed_out = True
        except (EOFError, OSError):
            reply = None  # the worker died
        except Exception as exc:  # a reply that does not unpickle
            log.error("parse_worker_bad_reply url=%s error=%r", shown, exc)
            reply = None
        except BaseException:
            _kill(worker)
            self._release(worker, keep=False)
            raise
        if isinstance(reply, tuple) and len(reply) == 3:
            status, value, rss = reply
            worker.parses += 1
            if sent is not None and status != "error":
                worker.matcher = sent[0]  # it has it now
            with self.stats._lock:
                self.stats.parses += 1
                self.stats.peak_rss = max(self.stats.peak_rss, int(rss))
            self._release(worker, keep=True)
            if status == "ok":
                return list(value)
            if status == "feed-error":
                raise FeedError(shown, str(value))
            log.error("parse_failed url=%s\n%s", shown, value)
            last = str(value).strip().splitlines()[-1:] or ["unknown error"]
            raise FeedError(shown, f"the parser failed ({last[0][:300]}); this is a bug")
        # No reply: timed out, or the worker died.
        killed = timed_out or job.abandoned or self._closed
        if killed:
            _kill(worker)
        exitcode = _reap(worker)
        self._release(worker, keep=False)
        self._replace()
        if job.abandoned or (self._closed and not timed_out):
            raise FeedError(shown, "the parse was cancelled (shutting down)")
        message = self._failure(timed_out, exitcode)
        log.warning("parse_worker_replaced url=%s reason=%r", shown, message)
        raise FeedError(shown, message)

    def _failure(self, timed_out: bool, exitcode: int | None) -> str:
        with self.stats._lock:
            if timed_out:
                self.stats.timeouts += 1
                return f"parsing took longer than {self.deadline:g}s; the feed was skipped"
            if exitcode == EXIT_OUT_OF_MEMORY:
                self.stats.out_of_memory += 1
                limit = f" ({self.memory_limit // 2**20} MiB)" if self.memory_limit else ""
                return f"parsing ran out of memory{limit}; the feed was skipped"
            self.stats.crashes += 1
        if exitcode == -signal.SIGKILL:
            return (
                "the parser process was killed (most likely by the kernel, out of memory); "
                "the feed was skipped"
            )
        if exitcode == -signal.SIGXCPU:
            return f"parsing used more than {self._cpu_budget}s of CPU; the feed was skipped"
        if exitcode is not None and exitcode < 0:
            name = signal.Signals(-exitcode).name
            return f"the parser process crashed (signal {name}); the feed was skipped"
        return f"the parser process crashed (exit status {exitcode}); the feed was skipped"

    def _replace(self) -> None:
        """Start a worker in place of one that was lost, so the next parse finds it warm."""
        with self._lock:
            if self._closed or len(self._idle) + len(self._busy) >= self.workers:
                return
        try:
            worker = self._start_worker()
        except OSError as exc:
            log.warning("parse_worker_start_failed error=%r (retried on the next parse)", exc)
            return
        with self._lock:
            if not self._closed and len(self._idle) + len(self._busy) < self.workers:
                self._idle.append(worker)
                return
        _stop(worker)


def _kill(worker: _Worker) -> None:
    # Already gone, or already closed: nothing to do.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        worker.process.kill()


def _reap(worker: _Worker, timeout: float = 5.0) -> int | None:
    """Wait for a worker that died or was killed; its exit code."""
    try:
        worker.process.join(timeout)
        return worker.process.exitcode
    except (ValueError, AssertionError):
        return None


def _stop(worker: _Worker) -> None:
    """End a worker for good: close its pipe (it exits on end-of-file), kill it if it does
    not within a second, release its resources."""
    worker.conn.close()
    process = worker.process
    try:
        process.join(1.0)
        if process.exitcode is None:
            process.kill()
            process.join(5.0)
        process.close()
    except (ValueError, AssertionError):
        pass
