"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/), read with :mod:`json`.

A JSON Feed is told from RSS by its content type or, served as anything else, by a
``"version": "https://jsonfeed.org/version/..."`` member near the start (sniffed
without parsing). Every value goes through :mod:`monitor.parse.clean` like an RSS
item's; JSON-only hazards (a 10,000-digit integer id, nesting deep enough to hit the
recursion limit, invalid UTF-8) cost the feed a clear error or one value, never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from monitor.errors import FeedError
from monitor.models import Article
from monitor.parse.clean import (
    MAX_AUTHOR,
    MAX_ENTRIES,
    MAX_FIELD,
    MAX_TITLE,
    _article,
    _categories,
    _link,
    _plain,
    _sane,
    html_to_text,
)

_JSON_TYPES = ("application/feed+json", "application/json")
_FIRST_CHAR = re.compile(rb"(?:\xef\xbb\xbf)?\s*(\S)")
_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/")


def _is_json(content: bytes, content_type: str) -> bool:
    first = _FIRST_CHAR.match(content)
    start = first.group(1) if first else b""
    if content_type.split(";")[0].strip().lower() in _JSON_TYPES:
        return start != b"<"  # an RSS document served with the wrong type
    if start != b"{":
        return False
    # Sniff the version without parsing: it is usually one of the first few members.
    return re.search(rb'"version"\s*:\s*"https?://jsonfeed\.org/version/', content) is not None


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
    document = _json_feed(shown, content)
    home = document.get("home_page_url")
    feed_base = base or (home if isinstance(home, str) else "")
    feed_author = _names(document.get("authors") or document.get("author"))
    return [
        _json_article(feed, feed_base, feed_author, item)
        for item in document["items"][:MAX_ENTRIES]
        if isinstance(item, dict)
    ]


def _json_feed(shown: str, content: bytes) -> dict[str, Any]:
    """The document, if it is a JSON object with a JSON Feed version and a list of items;
    else FeedError saying which of these it is not."""
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
    return document


def _json_article(feed: str, base: str, feed_author: str, item: dict[str, Any]) -> Article:
    html = item.get("content_html")
    text = item.get("content_text")
    tags = item.get("tags")
    return _article(
        feed,
        guid=_json_id(item.get("id")),
        title=_plain(item.get("title"), MAX_TITLE, one_line=True),
        link=_link(item.get("url"), base) or _link(item.get("external_url"), base),
        summary=_plain(item.get("summary"), MAX_FIELD),
        body=html_to_text(html) if isinstance(html, str) else _plain(text, MAX_FIELD),
        author=_names(item.get("authors") or item.get("author")) or feed_author,
        categories=_categories(tags[:1000] if isinstance(tags, list) else ()),
        published=(_json_date(item.get("date_published")) or _json_date(item.get("date_modified"))),
    )


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
