"""Feed bytes -> normalised :class:`Article` records. feedparser lives here only.

feedparser is always given the bytes and the response headers, never a URL or a path,
so it can never fetch anything by itself.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import feedparser

from monitor.errors import FeedError
from monitor.models import Article
from monitor.text import content_hash, mask_url

MAX_FIELD = 100_000
MAX_UID = 512
# Dates outside this range are treated as missing rather than trusted.
_MIN_YEAR, _MAX_YEAR = 1990, 2100
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BLOCK_TAGS = frozenset(
    "p br div li ul ol h1 h2 h3 h4 h5 h6 blockquote tr table pre section article".split()
)


class _TextExtractor(HTMLParser):
    """HTML to plain text: keeps text, turns block tags into line breaks, drops scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(value: str) -> str:
    """Plain text of an HTML fragment, whitespace tidied, control characters removed."""
    if "<" not in value and "&" not in value:
        text = value
    else:
        parser = _TextExtractor()
        parser.feed(value)
        parser.close()
        text = "".join(parser.parts)
    text = _CONTROL.sub("", text)
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)[:MAX_FIELD]


def _clean(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return html_to_text(value)


def _date(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                stamp = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                continue
            if _MIN_YEAR <= stamp.year <= _MAX_YEAR:
                return stamp
    return None


def _uid(raw: str) -> str:
    raw = _CONTROL.sub("", raw).strip()
    if len(raw) > MAX_UID:
        return "sha256:" + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()
    return raw


def parse_feed(feed: str, url: str, content: bytes, headers: Mapping[str, str]) -> list[Article]:
    """Parse feed bytes into articles; raise :class:`FeedError` if it is not a feed at all."""
    parsed = feedparser.parse(content, response_headers=dict(headers))
    # feedparser sets `version` ("rss20", "atom10"...) only when it recognised a feed; an
    # HTML page parses "successfully" into an empty feed, so that is the test to make.
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        detail = f" ({type(reason).__name__})" if reason else ""
        kind = headers.get("content-type", headers.get("Content-Type", "unknown type"))
        raise FeedError(
            mask_url(url),
            f"not an RSS or Atom feed{detail}, content type {kind}; "
            "check that the URL points at the feed, not at a web page",
        )
    articles = []
    for entry in parsed.entries:
        title = _clean(entry.get("title"))
        link = _CONTROL.sub("", str(entry.get("link") or "")).strip()[:2048]
        summary = _clean(entry.get("summary"))
        bodies = [c.get("value", "") for c in entry.get("content") or []]
        body = html_to_text("\n".join(b for b in bodies if isinstance(b, str)))
        if body == summary:
            body = ""
        author = _clean(entry.get("author"))
        categories = tuple(
            dict.fromkeys(
                c for tag in entry.get("tags") or [] if (c := _clean(tag.get("term"))[:200])
            )
        )[:50]
        digest = content_hash(title, summary, body)
        guid = str(entry.get("id") or "")
        uid = _uid(guid) or _uid(link) or "hash:" + digest
        articles.append(
            Article(
                feed=feed,
                uid=uid,
                title=title or "(untitled)",
                link=link,
                summary=summary,
                content=body,
                author=author,
                categories=categories,
                published=_date(entry),
                content_hash=digest,
            )
        )
    return articles
