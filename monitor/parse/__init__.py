"""Feed bytes -> normalised :class:`Article` records. feedparser lives in this package
only (and in :mod:`monitor.parse.rss`, which reads plain RSS 2.0 exactly as feedparser
would, ten times faster).

Two layers:

:func:`parse_feed`
    The pure, in-process parser: RSS / Atom through feedparser (plain RSS 2.0 through
    :mod:`monitor.parse.rss`), JSON Feed 1.0 / 1.1 through :mod:`json`. It is always
    given the bytes and the response headers, never a URL or a path, and nothing in a
    feed is ever fetched. Feeds that declare entities expanding to more than
    :data:`MAX_ENTITY_EXPANSION` bytes are refused before feedparser sees them. Every
    string is sanitised before it leaves: control characters removed, HTML turned into
    text, every field cut to a limit (``MAX_TITLE`` ... ``MAX_LINK``), only http(s)
    links kept, long ids hashed, implausible dates dropped, items without id or link
    given a content-hash id.

:class:`ParsePool`
    The same function in isolated worker processes, so a hostile or pathological feed
    can cost the daemon one feed's poll, never its memory or its event loop.

The modules:

* :mod:`~monitor.parse.feed`: :func:`parse_feed`, which reader a document goes to;
* :mod:`~monitor.parse.xmlguard`: entity bombs refused, forbidden character references
  dropped, before any XML parser runs;
* :mod:`~monitor.parse.xmlfeed`: RSS and Atom, through the fast reader or feedparser;
* :mod:`~monitor.parse.rss`: the fast reader for plain RSS 2.0;
* :mod:`~monitor.parse.jsonfeed`: JSON Feed;
* :mod:`~monitor.parse.clean`: the limits, and every field sanitised into an Article;
* :mod:`~monitor.parse.pool`: :class:`ParsePool`, the parent side of the workers;
* :mod:`~monitor.parse.worker`: what runs inside a worker process.
"""

from monitor.parse.clean import (
    MAX_AUTHOR,
    MAX_CATEGORIES,
    MAX_CATEGORY,
    MAX_ENTRIES,
    MAX_FIELD,
    MAX_LINK,
    MAX_TITLE,
    MAX_UID,
    MAX_YEAR,
    MIN_YEAR,
    UNTITLED,
    html_to_text,
    plain_text,
)
from monitor.parse.feed import parse_feed
from monitor.parse.pool import ParsePool, PoolStats, default_context
from monitor.parse.worker import EXIT_OUT_OF_MEMORY, ParseTarget
from monitor.parse.xmlguard import MAX_ENTITIES, MAX_ENTITY_EXPANSION

__all__ = [
    "EXIT_OUT_OF_MEMORY",
    "MAX_AUTHOR",
    "MAX_CATEGORIES",
    "MAX_CATEGORY",
    "MAX_ENTITIES",
    "MAX_ENTITY_EXPANSION",
    "MAX_ENTRIES",
    "MAX_FIELD",
    "MAX_LINK",
    "MAX_TITLE",
    "MAX_UID",
    "MAX_YEAR",
    "MIN_YEAR",
    "UNTITLED",
    "ParsePool",
    "ParseTarget",
    "PoolStats",
    "default_context",
    "html_to_text",
    "parse_feed",
    "plain_text",
]
