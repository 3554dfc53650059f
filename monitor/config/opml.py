"""OPML feed lists: read the subscriptions a feed reader exports, write ours. Pure.

Reading goes through defusedxml: a file with a DTD (``<!DOCTYPE``), entity declarations
or external references is refused, so an OPML file can neither expand into gigabytes
("billion laughs") nor make us read local files or the network.

Outlines that carry an ``xmlUrl`` are feeds; the outlines around them are folders, whose
titles become the feed's tags (outer folder first), followed by the entries of the
feed's own ``category`` attribute. Everything else (links, includes, empty folders) is
ignored.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden

from monitor.errors import ConfigError
from monitor.models import FeedConfig
from monitor.text import mask_url

#: The longest feed name the settings accept (see monitor.config.feeds.FEED_NAME).
MAX_NAME = 80
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_NOT_HOST = re.compile(r"[^a-z0-9.-]+")
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class OpmlFeed:
    """One feed of an OPML file."""

    #: The outline's ``text`` (else ``title``); may be empty.
    title: str
    #: The ``xmlUrl``: the feed itself, as written.
    url: str
    #: The ``htmlUrl``: the site, when given.
    html_url: str = ""
    #: Folder titles from the outermost in, then the ``category`` attribute's entries.
    tags: tuple[str, ...] = ()


def _line_of(data: bytes, needle: bytes) -> int | None:
    at = data.lower().find(needle.lower())
    return data.count(b"\n", 0, at) + 1 if at >= 0 else None


def _local(tag: object) -> str:
    """An element's name without its namespace, lower-cased ('' for comments and the like)."""
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _attributes(element: ET.Element) -> dict[str, str]:
    # Attribute names are case-sensitive in XML, but exporters write xmlUrl, xmlurl, XMLURL.
    return {_local(k): v.strip() for k, v in element.attrib.items()}


def _categories(value: str) -> list[str]:
    """``category="/Tech/Linux,news"`` -> ['Tech', 'Linux', 'news']."""
    out: list[str] = []
    for entry in value.split(","):
        out.extend(part.strip() for part in entry.split("/") if part.strip())
    return out


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def parse_opml(data: bytes, source: str) -> list[OpmlFeed]:
    """The feeds of an OPML document, in document order; ``source`` names it in errors.

    Raises :class:`ConfigError` for a document that is not well-formed XML, declares a
    DTD or entities, is not OPML, or lists no feed at all.
    """
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        raise ConfigError(
            "refusing an OPML file with a DTD (<!DOCTYPE ...>): DTDs and entity declarations "
            "are not allowed; remove the DOCTYPE line",
            source,
            _line_of(data, b"<!DOCTYPE"),
        ) from exc
    except EntitiesForbidden as exc:
        raise ConfigError(
            "refusing an OPML file that declares entities (<!ENTITY ...>)",
            source,
            _line_of(data, b"<!ENTITY"),
        ) from exc
    except DefusedXmlException as exc:
        raise ConfigError(f"refusing the OPML file: {exc}", source) from exc
    except ET.ParseError as exc:
        line, column = exc.position
        message = str(exc).split(":", 1)[0]
        raise ConfigError(f"not well-formed XML: {message}", source, line, column + 1) from exc
    if _local(root.tag) != "opml":
        raise ConfigError(
            f"not an OPML file: the document is <{_local(root.tag) or '?'}>, not <opml>",
            source,
            1,
        )
    body = next((child for child in root if _local(child.tag) == "body"), None)
    feeds: list[OpmlFeed] = []
    # Depth first, in document order, without recursion (a deeply nested file is fine).
    stack: list[tuple[ET.Element, tuple[str, ...]]] = (
        [(child, ()) for child in reversed(list(body))] if body is not None else []
    )
    while stack:
        element, folders = stack.pop()
        if _local(element.tag) != "outline":
            continue
        attrs = _attributes(element)
        title = attrs.get("text") or attrs.get("title") or ""
        url = attrs.get("xmlurl", "")
        if url:
            tags = _unique([*folders, *_categories(attrs.get("category", ""))])
            feeds.append(OpmlFeed(title, url, attrs.get("htmlurl", ""), tags))
        inner = (*folders, title) if title and not url else folders
        stack.extend((child, inner) for child in reversed(list(element)))
    if not feeds:
        raise ConfigError(
            "the OPML file lists no feeds (no <outline> with an xmlUrl attribute)", source
        )
    return feeds


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def to_opml(
    feeds: Sequence[FeedConfig],
    title: str,
    *,
    include_credentials: bool = False,
    created: datetime | None = None,
) -> bytes:
    """An OPML 2.0 document of ``feeds``, grouped into folders by their first tag.

    Every tag is also listed in the ``category`` attribute, so :func:`parse_opml` gives
    the same tags back. User names and passwords in URLs are masked (``https://***@host``)
    unless ``include_credentials``.
    """
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = _clean(title)
    if created is not None:
        ET.SubElement(head, "dateCreated").text = format_datetime(
            created.astimezone(UTC), usegmt=True
        )
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for feed in feeds:
        parent = body
        if feed.tags:
            first = _clean(feed.tags[0])
            if first not in folders:
                folders[first] = ET.SubElement(body, "outline", text=first, title=first)
            parent = folders[first]
        url = feed.url if include_credentials else mask_url(feed.url)
        attrs = {"type": "rss", "text": _clean(feed.name), "title": _clean(feed.name)}
        attrs["xmlUrl"] = _clean(url)
        category = ",".join(_clean(t) for t in feed.tags if "," not in t and "/" not in t)
        if category:
            attrs["category"] = category
        ET.SubElement(parent, "outline", attrs)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + document + b"\n"


def _slug(text: str, pattern: re.Pattern[str]) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = ascii_text.encode("ascii", "ignore").decode().lower()
    return pattern.sub("-", ascii_text).strip("-._")


def feed_name(title: str, url: str, taken: set[str]) -> str:
    """A feed name for ``title`` (else the URL's host) that the settings accept
    (letters, digits, '-', '_', '.'; at most 80 characters) and that is not in ``taken``
    (compared case-insensitively). ``taken`` is not changed: add the result to it.

    'BBC News - World' -> 'bbc-news-world'; a title of no Latin letters falls back to the
    host ('www.kommersant.ru' -> 'kommersant.ru'); a clash gets '-2', '-3'... appended.
    """
    base = _slug(title, _NOT_NAME)
    if not base:
        try:
            host = (urlsplit(url).hostname or "").removeprefix("www.")
        except ValueError:  # not a URL at all ("https://[")
            host = ""
        base = _slug(host, _NOT_HOST)
    base = base or "feed"
    used = {t.lower() for t in taken}
    candidate = base[:MAX_NAME].rstrip("-._")
    number = 1
    while candidate.lower() in used:
        number += 1
        suffix = f"-{number}"
        candidate = base[: MAX_NAME - len(suffix)].rstrip("-._") + suffix
    return candidate
