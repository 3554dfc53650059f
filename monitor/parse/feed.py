"""The parser's entry point: feed bytes and response headers -> articles.

:func:`parse_feed` decides which reader a document goes to (JSON Feed or RSS / Atom)
and the base that relative links resolve against. It is always given the bytes and
the headers, never a URL to open or a path, and nothing in a feed is ever fetched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from urllib.parse import urljoin

from monitor.models import Article
from monitor.parse.clean import _without_credentials
from monitor.parse.jsonfeed import _is_json, _parse_json
from monitor.parse.xmlfeed import _parse_xml
from monitor.text import mask_url


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""


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
