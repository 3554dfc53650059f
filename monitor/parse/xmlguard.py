"""The XML guard: what is done to a document before any XML parser sees it.

Two kinds of document would cost far more than their size, or the whole feed, if they
reached feedparser as they are:

* an "XML bomb": entities declared to expand to more than
  :data:`MAX_ENTITY_EXPANSION` bytes are refused. expat itself refuses a "quadratic
  blowup", but feedparser then falls back to its lenient parser, which expands the
  entities without any bound (100 KB entity x 20,000 references = a 2 GB title, 6 GB
  of RAM and 40 s of CPU);
* a character reference to a character XML forbids (``&#xD800;``, ``&#1;``): expat
  refuses the whole document for one, and feedparser's fallback then crashes on it.
  Such references are dropped.

Both look at UTF-16 and UTF-32 documents as feedparser would decode them.
"""

from __future__ import annotations

import re
from typing import AnyStr

from monitor.errors import FeedError

#: Bytes that declared XML entities may add to a document before it is refused.
MAX_ENTITY_EXPANSION = 1_000_000
#: Expanding entity declarations one document may make before it is refused.
MAX_ENTITIES = 64
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


def _refuse_entity_bombs(shown: str, content: bytes) -> None:
    """Raise FeedError for a document whose entities would expand beyond the limits."""
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
