"""Escaping values from feeds for each format, and highlighting matched terms in them.

Everything that came from a feed (title, snippet, link, feed, terms, outlets) is escaped
for the target: titles are one line without control characters (they become mail
subjects), HTML is escaped, Markdown metacharacters are backslash-escaped and mass
mentions (``@everyone``, ``<!channel>``...) are broken with a zero-width space. Only
http(s) links are ever linked. JSON is written with :func:`dumps`, without lone
surrogates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from monitor.deliver.render_formats import Format
from monitor.models import FIELDS, TermMode
from monitor.text import phrase_at, term_keys, tokenize

_LINEBREAKS = re.compile(r"[\r\n\t\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
# Control characters, bidirectional overrides (they can reverse a displayed title) and
# lone surrogates (they cannot be encoded).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Mass mentions of chat services: @everyone (Discord), @channel, @here, @all (Slack,
# Mattermost, Rocket.Chat), @room (Matrix), @**all** (Zulip), <!channel> (Slack).
_AT_MENTION = re.compile(
    r"([@\uff20])(?=[*_\\\s]*(?:everyone|here|channel|all|room|group|online|stream|topic)\b)",
    re.IGNORECASE,
)
_BANG_MENTION = re.compile(r"<!(?=\s*(?:channel|here|everyone|subteam)\b)", re.IGNORECASE)
_ZWSP = "\u200b"
# Characters that open inline constructs in CommonMark and the chat dialects (links,
# images, autolinks, raw HTML, code, emphasis, strike-through), escaped in values. With
# "[" escaped, "(" and "!" cannot start a link or image; values are one line, so the
# block markers (#, >, -, |) of the start of a line are not escaped.
_MARKDOWN_META = re.compile(r"([\\`*_\[\]<>~])")
_ENTITY = re.compile(r"&(?=#?\w+;)")
_WEB_URL = re.compile(r"https?://[^\s/?#\\]+", re.IGNORECASE)
# Kept as they are in a link URL; everything else (spaces, (), <>, quotes...) is encoded.
_URL_SAFE = "/:?#[]@!$&+,;=%-._~"


def one_line(text: str, limit: int) -> str:
    """No line breaks (they would forge mail headers) nor control characters, at most
    ``limit`` characters (cut with "…")."""
    flat = _CONTROL.sub("", _LINEBREAKS.sub(" ", text)).strip()
    if len(flat) <= limit:
        return flat
    if limit <= 1:
        return "…"[:limit]
    return flat[: limit - 1].rstrip() + "…"


def clean_lines(text: str, limit: int) -> str:
    """Multi-line text (notices): line breaks kept as ``\\n``, control characters removed."""
    flat = _CONTROL.sub("", _NEWLINES.sub("\n", text).replace("\t", " ")).strip()
    if len(flat) <= limit:
        return flat
    return flat[: max(0, limit - 1)].rstrip() + "…" if limit > 0 else ""


def no_mentions(text: str) -> str:
    """``text`` with mass mentions broken by a zero-width space: ``@​everyone``."""
    return _BANG_MENTION.sub("<!" + _ZWSP, _AT_MENTION.sub(r"\1" + _ZWSP, text))


def markdown_escape(text: str) -> str:
    """``text`` as literal Markdown: metacharacters backslash-escaped, mentions broken."""
    return _ENTITY.sub(r"\\&", _MARKDOWN_META.sub(r"\\\1", no_mentions(text)))


def web_url(url: str) -> str | None:
    """The URL, percent-encoded for use in ``href`` and ``[..](url)``, if it is http(s)."""
    url = url.strip()
    if _CONTROL.search(url) or not _WEB_URL.match(url):
        return None
    return quote(url, safe=_URL_SAFE)


class EscapedMarkdown(str):
    """Markdown that is already escaped: printed as it is."""

    __slots__ = ()


# --- highlighting ------------------------------------------------------------------------

_FIELD_PREFIX = re.compile(r"([A-Za-z]+):(?=\S)")
_NEAR = re.compile(r"\s+NEAR/\d+\s+")


def _term_patterns(terms: Iterable[str]) -> list[tuple[tuple[str, ...], TermMode]]:
    """The word keys of each term as the rule wrote it (``title:sanction*``, ``a NEAR/5
    b``...); regular expressions are not highlighted."""
    patterns: list[tuple[tuple[str, ...], TermMode]] = []
    for term in terms:
        for part in _NEAR.split(term.strip()):
            text = part.strip()
            if (m := _FIELD_PREFIX.match(text)) and m.group(1).lower() in FIELDS:
                text = text[m.end() :]
            if text.startswith("/"):
                continue
            mode: TermMode = "word"
            if len(text) > 1 and text[-1] in "*~":
                mode = "prefix" if text[-1] == "*" else "stem"
                text = text[:-1]
            keys = term_keys(text.strip().strip('"').strip(), mode)
            if keys:
                patterns.append((keys, mode))
    return patterns


def _segments(text: str, terms: Sequence[str]) -> list[tuple[str, bool]]:
    """``text`` split into (part, is_a_matched_term) pieces."""
    patterns = _term_patterns(terms)
    tokens = tokenize(text) if patterns else None
    spans: list[tuple[int, int]] = []
    if tokens is not None:
        seq = list(tokens.words)
        for index in range(len(seq)):
            for keys, mode in patterns:
                if phrase_at(seq, index, keys, mode):
                    start = tokens.spans[index][0]
                    end = tokens.spans[index + len(keys) - 1][1]
                    if spans and start <= spans[-1][1]:
                        spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
                    else:
                        spans.append((start, end))
    pieces: list[tuple[str, bool]] = []
    at = 0
    for start, end in spans:
        if start > at:
            pieces.append((text[at:start], False))
        pieces.append((text[start:end], True))
        at = end
    if at < len(text):
        pieces.append((text[at:], False))
    return pieces


def highlight(text: str, terms: Sequence[str], fmt: Format) -> str:
    if fmt == "email":
        return Markup("").join(
            Markup("<mark>%s</mark>") % part if hit else Markup.escape(part)
            for part, hit in _segments(text, terms)
        )
    if fmt == "markdown":
        text = no_mentions(text)
        return EscapedMarkdown(
            "".join(
                f"**{markdown_escape(part)}**" if hit else markdown_escape(part)
                for part, hit in _segments(text, terms)
            )
        )
    return text


# --- JSON -------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


_SURROGATES = re.compile(r"[\ud800-\udfff]")


def strip_surrogates(value: Any) -> Any:
    """JSON of text from the wild: lone surrogates cannot be sent as UTF-8."""
    if isinstance(value, str):
        return _SURROGATES.sub("", value)
    if isinstance(value, dict):
        return {k: strip_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_surrogates(v) for v in value]
    return value
