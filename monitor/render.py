"""Alert messages for one delivery or digest, in the format of the channel. Pure.

Every message says why the alert fired: rule and severity, the matched terms and a snippet
around them (terms highlighted), feed, link, published time and time seen, and ends with a
footer carrying the delivery id and idempotency key (``Delivery #12 · key hit-5-mail-0``)
for support questions and receiver-side de-duplication.

Formats (:func:`format_for_url` picks one from the apprise scheme):

* ``text`` (console and unknown services): aligned ``Label: value`` lines.
* ``email``: a small HTML body (inline styles only, no external resources); apprise builds
  the text alternative from it, one field per line.
* ``markdown`` (chat services): bold labels, ``[title](url)`` links.
* ``json`` (webhooks): ``json.dumps`` of every field; always valid JSON, even shortened.

Everything that came from a feed (title, snippet, link, feed, terms, outlets) is escaped
for the target: titles are one line without control characters (they become mail
subjects), HTML is escaped, Markdown metacharacters are backslash-escaped and mass
mentions (``@everyone``, ``<!channel>``...) are broken with a zero-width space. Only
http(s) links are ever linked. Values are never evaluated as templates.

Templates
---------
The default layouts are Jinja2 templates (:data:`ALERT_TEMPLATES`, :data:`DIGEST_TEMPLATES`);
a :class:`~monitor.models.Template` from the config or a rule replaces the title and/or
the body. Templates run in Jinja2's immutable sandbox with ``trim_blocks`` and
``lstrip_blocks``; every ``{{ value }}`` is escaped for the format (one line, HTML,
Markdown; in ``json`` bodies each value becomes a JSON literal, so write
``{"headline": {{ title }}}``); the ``safe`` filter does not exist. Unknown variables
render as empty (``null`` in json). A template that fails to compile or render never
loses the alert: the default is used and the body says ``(custom template failed:
<ExceptionType>)`` (json: a ``"template_error"`` field). The footer is always appended
after the body template, and system notices (feed health...) always use the built-in
layout. Templates come from the operator's config: the sandbox keeps them away from
Python internals but does not bound their running time.

Variables of an alert (``kind`` is ``"alert"``):

* ``rule``, ``severity``, ``title`` (the article's), ``feed``, ``channel``;
* ``link``: the article URL as text (html/markdown: ``(link removed: not http/https)``
  for other schemes); ``href``: the URL when it is http(s), ready for ``href="..."`` or
  ``[..](...)``, else empty;
* ``terms`` (list), ``matched`` (the terms as one line, "+N more" past a dozen);
* ``snippet``; ``highlighted``: the snippet with the terms marked (``<mark>`` in html,
  ``**bold**`` in markdown, unmarked in text);
* ``published`` (empty when unknown), ``seen_at``;
* ``story_id`` (empty without a story), ``sources``, ``outlets`` (list), ``story``
  (``#7, 3 sources (a, b, c)``, empty without a story), ``step`` (N for the follow-up
  sent when N sources carried the story, else 0);
* ``delivery_id``, ``key``, ``footer``, ``format``.

Variables of a digest (``kind`` is ``"digest"``): ``items`` (each with the variables of
an alert, ``item.kind`` being ``"alert"`` or ``"notice"``, a notice's text in
``item.notice``), ``total``, ``more`` (alerts not listed), ``reason`` (``digest``,
``quiet-hours`` or ``storm``), ``label``, ``summary`` (``digest: 12 alerts (rule
sanctions)``), ``created_at``, ``channel``, ``delivery_id`` (the digest's id), ``key``,
``footer``, ``format``.

Long messages are shortened to fit :class:`Limits`: the snippet and long fields shrink
first (digests also list fewer items), so the footer always survives; as a last resort
the body is cut before the footer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from monitor.models import FIELDS, Digest, PendingDelivery, Template, TermMode
from monitor.text import phrase_at, term_keys, tokenize

Format = Literal["text", "email", "markdown", "json"]
FORMATS: tuple[Format, ...] = ("text", "email", "markdown", "json")

#: Matched terms shown in an alert; the rest are counted ("+7 more").
TERMS_SHOWN = 12
#: Outlets named in a story line; the rest are counted.
OUTLETS_SHOWN = 6
#: Shown instead of a link whose scheme is not http or https (html and markdown).
LINK_REMOVED = "(link removed: not http/https)"

#: How apprise must read the body of each format.
_BODY_FORMATS: dict[Format, str] = {
    "text": "text",
    "email": "html",
    "markdown": "markdown",
    "json": "text",
}


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    #: How apprise must read the body: "text", "html" or "markdown".
    body_format: str = "text"


@dataclass(frozen=True)
class Limits:
    """The most characters a channel takes in a title and in a body."""

    title: int = 250
    body: int = 32768


DEFAULT_LIMITS = Limits()


# --- channel formats ---------------------------------------------------------------------

_EMAIL_SCHEMES = frozenset(
    """
    mailto mailtos ses sendgrid mailgun sparkpost resend smtp2go brevo postmark
    mailersend sendpulse o365 azure
    """.split()
)
_JSON_SCHEMES = frozenset("json jsons form forms xml xmls".split())
_TEXT_SCHEMES = frozenset(["console"])
_CHAT_SCHEMES = frozenset(
    """
    mmost mmosts slack discord tgram matrix matrixs rocket rockets msteams workflow
    workflows zulip gchat ntfy ntfys signal signals guilded revolt lark feishu ryver
    flock twist wxteams webex nctalk nctalks dingtalk cliq zcliq zohocliq kook whapi
    """.split()
)


def format_for_url(url: str) -> Format:
    """The message format for an apprise URL, by its scheme."""
    scheme = url.split("://", 1)[0].strip().lower() if "://" in url else ""
    if scheme in _EMAIL_SCHEMES:
        return "email"
    if scheme in _JSON_SCHEMES:
        return "json"
    if scheme in _TEXT_SCHEMES or scheme not in _CHAT_SCHEMES:
        return "text"  # the console, and every service not known to read more
    return "markdown"


# --- cleaning and escaping ---------------------------------------------------------------

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


def _clean_lines(text: str, limit: int) -> str:
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


class _Md(str):
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


def _highlight(text: str, terms: Sequence[str], fmt: Format) -> str:
    if fmt == "email":
        return Markup("").join(
            Markup("<mark>%s</mark>") % part if hit else Markup.escape(part)
            for part, hit in _segments(text, terms)
        )
    if fmt == "markdown":
        text = no_mentions(text)
        return _Md(
            "".join(
                f"**{markdown_escape(part)}**" if hit else markdown_escape(part)
                for part, hit in _segments(text, terms)
            )
        )
    return text


# --- Jinja2 environments -----------------------------------------------------------------

Part = Literal["title", "body"]


def _join(values: Iterable[Any], one: Callable[[Any], str]) -> str:
    return ", ".join(one(v) for v in values)


def _finalizer(fmt: Format, part: Part) -> Callable[[Any], Any]:
    """What every ``{{ value }}`` becomes in ``fmt``: escaped for it."""

    def plain(value: Any) -> str:
        if isinstance(value, jinja2.Undefined) or value is None:
            return ""
        if isinstance(value, list | tuple | set | frozenset):
            return _join(value, plain)
        return one_line(str(value), 1 << 30)

    if part == "title":
        if fmt == "markdown":
            return lambda value: markdown_escape(plain(value))
        if fmt == "text":
            return lambda value: no_mentions(plain(value))
        return plain
    if fmt == "json":

        def literal(value: Any) -> str:
            return _dumps(None if isinstance(value, jinja2.Undefined) else value)

        return literal
    if fmt == "email":

        def html(value: Any) -> Markup:
            if isinstance(value, Markup):
                return value
            if isinstance(value, list | tuple | set | frozenset):
                return Markup(", ").join(html(v) for v in value)
            return Markup.escape(plain(value))

        return html
    if fmt == "markdown":

        def markdown(value: Any) -> str:
            if isinstance(value, _Md):
                return value
            if isinstance(value, list | tuple | set | frozenset):
                return _join(value, markdown)
            return markdown_escape(plain(value))

        return markdown
    return lambda value: no_mentions(plain(value))


@lru_cache(maxsize=16)
def _environment(fmt: Format, part: Part) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=fmt == "email" and part == "body",
        finalize=_finalizer(fmt, part),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Feed values are escaped whatever the template says.
    env.filters.pop("safe", None)
    return env


@lru_cache(maxsize=512)
def _compile(fmt: Format, part: Part, source: str) -> jinja2.Template:
    return _environment(fmt, part).from_string(source)


def check_template(source: str) -> str | None:
    """None if the Jinja2 source compiles in the sandbox; else a one-line error with the
    line number."""
    try:
        _compile("text", "body", source)
    except jinja2.TemplateSyntaxError as exc:
        return one_line(f"line {exc.lineno}: {exc.message or type(exc).__name__}", 500)
    return None


# --- default templates -------------------------------------------------------------------

ALERT_TITLE = "[{{ rule }}] {% if step %}now {{ step }} sources: {% endif %}{{ title }}"
DIGEST_TITLE = "[news-monitor] {{ summary }}"

_TEXT_ALERT = """\
Rule:      {{ rule }} ({{ severity }})
Article:   {{ title }}
{% if story %}
Story:     {{ story }}
{% endif %}
Feed:      {{ feed }}
Link:      {{ link or "(none)" }}
Matched:   {{ matched }}
Why:       {{ snippet }}
Published: {{ published or "unknown" }}   Seen: {{ seen_at }}
"""

_EMAIL_ALERT = """\
<div style="font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5">
<div><b>Rule:</b> {{ rule }} ({{ severity }})</div>
<div><b>Article:</b> {{ title }}</div>
{% if story %}
<div><b>Story:</b> {{ story }}</div>
{% endif %}
<div><b>Feed:</b> {{ feed }}</div>
<div><b>Link:</b> {% if href %}<a href="{{ href }}">{{ link }}</a>\
{% else %}{{ link or "(none)" }}{% endif %}</div>
<div><b>Matched:</b> {{ matched }}</div>
<div><b>Why:</b> {{ highlighted }}</div>
<div><b>Published:</b> {{ published or "unknown" }} · <b>Seen:</b> {{ seen_at }}</div>
</div>
"""

_MARKDOWN_ALERT = """\
**Rule:** {{ rule }} ({{ severity }})
**Article:** {% if href %}[{{ title or "(untitled)" }}]({{ href }})\
{% else %}{{ title }}{% if link %} {{ link }}{% endif %}{% endif +%}
{% if story %}
**Story:** {{ story }}
{% endif %}
**Feed:** {{ feed }}
**Matched:** {{ matched }}
**Why:** {{ highlighted }}
**Published:** {{ published or "unknown" }} · **Seen:** {{ seen_at }}
"""

_TEXT_DIGEST = """\
{{ summary }}
{% for item in items %}

{% if item.kind == "notice" %}
- {{ item.title }}: {{ item.notice }}
{% else %}
- [{{ item.rule }}] ({{ item.severity }}) {{ item.title }}
  Link:    {{ item.link or "(none)" }}
  Feed:    {{ item.feed }} · Matched: {{ item.matched }}
{% endif %}
{% endfor %}
{% if more %}

+{{ more }} more
{% endif %}
"""

_EMAIL_DIGEST = """\
<div style="font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5">
<div><b>{{ summary }}</b></div>
<ul style="padding-left:18px">
{% for item in items %}
{% if item.kind == "notice" %}
<li>{{ item.title }}: {{ item.notice }}</li>
{% else %}
<li><b>{{ item.rule }}</b> ({{ item.severity }}) {{ item.title }}
<br>{% if item.href %}<a href="{{ item.href }}">{{ item.link }}</a>\
{% else %}{{ item.link or "(no link)" }}{% endif %}
<br>Feed: {{ item.feed }} · Matched: {{ item.matched }}</li>
{% endif %}
{% endfor %}
</ul>
{% if more %}
<div>+{{ more }} more</div>
{% endif %}
</div>
"""

_MARKDOWN_DIGEST = """\
**{{ summary }}**
{% for item in items %}
{% if item.kind == "notice" %}
- {{ item.title }}: {{ item.notice }}
{% else %}
- **{{ item.rule }}** ({{ item.severity }}) \
{% if item.href %}[{{ item.title or "(untitled)" }}]({{ item.href }}){% else %}{{ item.title }}\
{% if item.link %} {{ item.link }}{% endif %}{% endif %} · {{ item.feed }} · \
matched: {{ item.matched }}
{% endif %}
{% endfor %}
{% if more %}

+{{ more }} more
{% endif %}
"""


def _compact(html: str) -> str:
    """The template without the line breaks between its tags: apprise turns the HTML into
    the text part of the mail, where each would become an empty line."""
    return re.sub(r"(?<=[>}])\n(?=<|\{%)", "", html)


#: The default body template of an alert, per format (json bodies are built, not templated).
ALERT_TEMPLATES: dict[Format, str] = {
    "text": _TEXT_ALERT,
    "email": _compact(_EMAIL_ALERT),
    "markdown": _MARKDOWN_ALERT,
}
#: The default body template of a digest, per format.
DIGEST_TEMPLATES: dict[Format, str] = {
    "text": _TEXT_DIGEST,
    "email": _compact(_EMAIL_DIGEST),
    "markdown": _MARKDOWN_DIGEST,
}


# --- template variables ------------------------------------------------------------------


#: How far a message is shrunk: (share of the snippet, share of the other long values).
Step = tuple[float, float]


@dataclass(frozen=True)
class _Caps:
    """How long each value may be at one step of shrinking a message to fit."""

    title: int
    snippet: int
    field: int
    link: int
    notice: int
    terms: int
    outlets: int

    @classmethod
    def at(cls, step: Step, *, item: bool = False) -> _Caps:
        def cap(base: int, least: int, scale: float = step[1]) -> int:
            return max(least, int(base * scale))

        if item:  # one entry of a digest
            return cls(
                cap(200, 30), cap(300, 1, step[0]), cap(120, 20), cap(1000, 60), cap(500, 60), 6, 3
            )
        return cls(
            cap(500, 40),
            cap(600, 1, step[0]),
            cap(300, 30),
            cap(2000, 60),
            cap(4000, 80),
            cap(TERMS_SHOWN, 1),
            cap(OUTLETS_SHOWN, 1),
        )


#: The steps of shrinking a message: the shares of their usual length left to the snippet
#: and to the other long values (and of the items of a digest). The snippet goes first.
_STEPS: tuple[Step, ...] = (
    (1.0, 1.0),
    (0.5, 1.0),
    (0.25, 1.0),
    (0.1, 0.5),
    (0.0, 0.25),
    (0.0, 0.1),
    (0.0, 0.0),
)
_FULL, _LAST = _STEPS[0], _STEPS[-1]


def _matched(shown: Sequence[str], total: int) -> str:
    """The matched terms as one line: ``a, b, c (+7 more)``."""
    if not total:
        return "(no positive terms)"
    more = total - len(shown)
    listed = ", ".join(shown)
    return f"{listed} (+{more} more)" if more > 0 else listed


def _story(d: PendingDelivery, shown: Sequence[str]) -> str:
    """``#7, 3 sources (a, b +1 more)``; empty without a story."""
    if d.story_id is None:
        return ""
    count = f"{d.sources} source{'s' if d.sources != 1 else ''}"
    listed = ", ".join(shown)
    more = len(d.outlets) - len(shown)
    if more > 0:
        listed += f" +{more} more"
    return f"#{d.story_id}, {count}" + (f" ({listed})" if listed else "")


def _footer(label: str, number: int, key: str, fmt: Format) -> str:
    """``Delivery #12 · key hit-5-mail-0`` in the format (text: aligned like the fields)."""
    keyed = f" · key {one_line(key, 200)}" if key else ""
    if fmt == "text":
        return f"{label + ':':<10} #{number}{keyed}"
    if fmt == "markdown":
        return f"{label} #{number}" + (
            f" · key {markdown_escape(one_line(key, 200))}" if key else ""
        )
    if fmt == "email":
        return str(
            Markup('<p style="margin:12px 0 0;color:#777;font-size:12px">%s</p>')
            % f"{label} #{number}{keyed}"
        )
    return f"{label} #{number}{keyed}"


def _link(link: str, fmt: Format, cap: int) -> tuple[str, str]:
    """The link as text, and as a target (empty unless http(s)) ready for ``fmt``."""
    url = web_url(link)
    if url is None and link and fmt in ("email", "markdown"):
        return LINK_REMOVED, ""
    if url is None or len(link) > cap:
        return one_line(link, cap), ""
    if fmt == "email":
        return link, Markup.escape(url)
    return link, _Md(url) if fmt == "markdown" else url


def _alert_vars(d: PendingDelivery, fmt: Format, caps: _Caps) -> dict[str, Any]:
    """The variables of one alert (or notice) for a template in ``fmt``."""
    terms = tuple(one_line(t, caps.field) for t in d.terms[: caps.terms])
    outlets = tuple(one_line(o, caps.field) for o in d.outlets[: caps.outlets])
    snippet = one_line(d.snippet, caps.snippet)
    link, href = _link(one_line(d.link, 1 << 30), fmt, caps.link)
    return {
        "kind": "notice" if d.notice else "alert",
        "format": fmt,
        "delivery_id": d.id,
        "key": d.key,
        "channel": one_line(d.channel, caps.field),
        "rule": one_line(d.rule, caps.field),
        "severity": d.severity,
        "title": one_line(d.title, caps.title),
        "link": link,
        "href": href,
        "feed": one_line(d.feed, caps.field),
        "terms": terms,
        "matched": _matched(terms, len(d.terms)),
        "snippet": snippet,
        "highlighted": _highlight(snippet, d.terms, fmt),
        "published": one_line(d.published or "", caps.field),
        "seen_at": one_line(d.seen_at, caps.field),
        "story_id": d.story_id,
        "sources": d.sources,
        "outlets": outlets,
        "story": _story(d, outlets),
        "step": d.step,
        "notice": one_line(d.notice, caps.notice),
    }


def _json_alert(d: PendingDelivery, caps: _Caps) -> dict[str, Any]:
    def cut(text: str, limit: int) -> str:
        return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

    return {
        "kind": "notice" if d.notice else "alert",
        "id": d.id,
        "key": d.key,
        "channel": d.channel,
        "rule": cut(d.rule, caps.field),
        "severity": d.severity,
        "title": cut(d.title, caps.title),
        "link": cut(d.link, caps.link),
        "feed": cut(d.feed, caps.field),
        "terms": [cut(t, caps.field) for t in d.terms[: caps.terms]],
        "snippet": cut(d.snippet, caps.snippet),
        "published": d.published,
        "seen_at": d.seen_at,
        "story": {
            "id": d.story_id,
            "sources": d.sources,
            "outlets": [cut(o, caps.field) for o in d.outlets[: caps.outlets]],
        },
        "step": d.step,
        "notice": cut(d.notice, caps.notice),
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


_SURROGATES = re.compile(r"[\ud800-\udfff]")


def _strip_surrogates(value: Any) -> Any:
    """JSON of text from the wild: lone surrogates cannot be sent as UTF-8."""
    if isinstance(value, str):
        return _SURROGATES.sub("", value)
    if isinstance(value, dict):
        return {k: _strip_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_surrogates(v) for v in value]
    return value


# --- fitting a body into its limit -------------------------------------------------------

_SEPARATORS: dict[Format, str] = {"text": "\n", "email": "", "markdown": "\n\n", "json": ""}
_PARTIAL_TAG = re.compile(r"<[^>]*$|&#?\w*$")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\b[^>]*?(/?)>")
_OPEN_LINK = re.compile(r"(?<!\\)\[(?:\\.|[^\\\]])*(?:\](?:\([^)]*)?)?$")
_BOLD = re.compile(r"(?<!\\)\*\*")
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())


def _note_line(failures: Sequence[str], fmt: Format) -> str:
    if not failures:
        return ""
    note = f"(custom template failed: {', '.join(dict.fromkeys(failures))})"
    if fmt == "email":
        return str(Markup('<p style="margin:12px 0 0;color:#777"><i>%s</i></p>') % note)
    return markdown_escape(note) if fmt == "markdown" else note


def _assemble(fmt: Format, *parts: str) -> str:
    return _SEPARATORS[fmt].join(p for p in parts if p)


def _close_tags(html: str) -> str:
    """Closing tags for the elements ``html`` leaves open (after a cut)."""
    open_tags: list[str] = []
    for closing, name, self_closing in _TAG.findall(html):
        name = name.lower()
        if name in _VOID or self_closing:
            continue
        if closing:
            if name in open_tags:
                del open_tags[len(open_tags) - 1 - open_tags[::-1].index(name) :]
        else:
            open_tags.append(name)
    return "".join(f"</{name}>" for name in reversed(open_tags))


def _tidy_markdown(text: str) -> str:
    """The start of a Markdown text without the constructs the cut left open: a lone
    trailing backslash, a link without its end, bold without its end."""
    text = text[: len(text) - (len(text) - len(text.rstrip("\\"))) % 2]
    text = _OPEN_LINK.sub("", text)
    last = text.rsplit("\n", 1)[-1]
    marks = [m.start() for m in _BOLD.finditer(last)]
    if len(marks) % 2:
        at = len(text) - len(last) + marks[-1]
        text = text[:at] + text[at + 2 :]
    return text


def _cut(raw: str, room: int, fmt: Format) -> str:
    """The start of a rendered body in at most ``room`` characters, still well-formed."""
    size = room
    while size > 0:
        text = raw[: size - 1]
        if fmt == "email":
            text = _PARTIAL_TAG.sub("", text)
            text = text + "…" + _close_tags(text)
        elif fmt == "markdown":
            text = _tidy_markdown(text) + "…"
        else:
            text = text + "…"
        if len(text) <= room:
            return text
        size -= len(text) - room
    return ""


def _fit(
    fmt: Format,
    limit: int,
    render_at: Callable[[Step], str],
    note: str,
    footer: str,
) -> str:
    """The body rendered at the first shrinking step that fits in ``limit``; else cut."""
    raw = ""
    for step in _STEPS:
        raw = render_at(step).strip()
        body = _assemble(fmt, raw, note, footer)
        if len(body) <= limit:
            return body
    tail = _assemble(fmt, note, footer)
    room = limit - len(tail) - len(_SEPARATORS[fmt])
    if room <= 0:
        return footer[:limit]
    return _assemble(fmt, _cut(raw, room, fmt), note, footer)


def _title(
    fmt: Format,
    limit: int,
    default: str,
    custom: str | None,
    variables: Mapping[str, Any],
    failures: list[str],
) -> str:
    if custom is not None:
        try:
            title = one_line(_compile(fmt, "title", custom).render(variables), limit)
            if title:
                return title
        except Exception as exc:  # a broken template must not lose the alert
            failures.append(type(exc).__name__)
    return one_line(_compile(fmt, "title", default).render(variables), limit)


def _body(
    fmt: Format,
    limit: int,
    default: str,
    custom: str | None,
    variables_at: Callable[[Step], dict[str, Any]],
    footer: str,
    failures: list[str],
) -> str:
    def render_with(source: str) -> Callable[[Step], str]:
        template = _compile(fmt, "body", source)
        return lambda step: template.render(variables_at(step))

    if custom is not None:
        try:
            # A failure at any shrinking step falls back to the default body.
            return _fit(fmt, limit, render_with(custom), _note_line(failures, fmt), footer)
        except Exception as exc:  # a broken template must not lose the alert
            failures.append(type(exc).__name__)
    return _fit(fmt, limit, render_with(default), _note_line(failures, fmt), footer)


def _json_body(
    limit: int,
    build_at: Callable[[Step], dict[str, Any]],
    custom: str | None,
    variables_at: Callable[[Step], dict[str, Any]],
    failures: list[str],
) -> str:
    """Valid JSON in at most ``limit`` characters: fields are shortened, never the text."""
    ident = build_at(_LAST)
    if custom is not None:
        try:
            template = _compile("json", "body", custom)
            for step in _STEPS:
                text = template.render(variables_at(step))
                value = json.loads(text)
                if isinstance(value, dict):
                    value.setdefault("id", ident["id"])
                    value.setdefault("key", ident["key"])
                    text = _dumps(_strip_surrogates(value))
                if len(text) <= limit:
                    return text
            failures.append("body too long")
        except Exception as exc:  # a broken template must not lose the alert
            failures.append(type(exc).__name__)
    extra = {"template_error": ", ".join(dict.fromkeys(failures))} if failures else {}
    for step in _STEPS:
        value = build_at(step) | {"truncated": step != _FULL} | extra
        text = _dumps(_strip_surrogates(value))
        if len(text) <= limit:
            return text
    minimal: dict[str, Any] = {
        key: ident[key] for key in ("kind", "id", "key", "channel") if key in ident
    }
    minimal["truncated"] = True
    text = _dumps(_strip_surrogates(minimal))
    room = limit - len(text) - len(', "title": ""')
    title = str(ident.get("title", ""))
    if room > 1 and title:
        minimal["title"] = title[: room - 1] + "…"
        fitted = _dumps(_strip_surrogates(minimal))
        while len(fitted) > limit and len(minimal["title"]) > 1:
            minimal["title"] = minimal["title"][: -1 - (len(fitted) - limit)] + "…"
            fitted = _dumps(_strip_surrogates(minimal))
        if len(fitted) <= limit:
            return fitted
    return text


# --- alerts ------------------------------------------------------------------------------


def _notice(d: PendingDelivery, fmt: Format, limits: Limits) -> Message:
    """A system notice (feed health...): its text and the delivery id, built-in layout."""
    title = _finalizer(fmt, "title")(one_line(d.title, limits.title))
    title = one_line(f"[news-monitor] {title}", limits.title)
    if fmt == "json":
        body = _json_body(
            limits.body, lambda step: _json_alert(d, _Caps.at(step)), None, lambda _: {}, []
        )
        return Message(title, body, _BODY_FORMATS[fmt])
    footer = _footer("Delivery", d.id, d.key, fmt)

    def render_at(step: Step) -> str:
        text = _clean_lines(d.notice, _Caps.at(step).notice)
        if fmt == "email":
            return str(
                Markup(
                    '<div style="font-family:Arial,Helvetica,sans-serif;font-size:14px">%s</div>'
                )
                % Markup("<br>").join(text.split("\n"))
            )
        if fmt == "markdown":
            return "\n".join(markdown_escape(line) for line in text.split("\n"))
        return no_mentions(text)

    return Message(title, _fit(fmt, limits.body, render_at, "", footer), _BODY_FORMATS[fmt])


def render(
    d: PendingDelivery,
    fmt: Format = "text",
    *,
    limits: Limits = DEFAULT_LIMITS,
    template: Template | None = None,
) -> Message:
    """The message of one alert for a channel of format ``fmt``."""
    if d.notice:
        return _notice(d, fmt, limits)
    failures: list[str] = []
    custom = template or Template()
    footer = _footer("Delivery", d.id, d.key, fmt)
    title_vars = _alert_vars(d, "text", _Caps.at(_FULL)) | {
        "title": one_line(d.title, limits.title + 1),
        "format": fmt,
    }
    title = _title(fmt, limits.title, ALERT_TITLE, custom.title, title_vars, failures)

    def variables_at(step: Step) -> dict[str, Any]:
        return _alert_vars(d, fmt, _Caps.at(step)) | {"footer": footer}

    def document_at(step: Step) -> dict[str, Any]:
        return _json_alert(d, _Caps.at(step))

    body = _any_body(
        fmt, limits, ALERT_TEMPLATES, custom, variables_at, document_at, footer, failures
    )
    return Message(title, body, _BODY_FORMATS[fmt])


def _any_body(
    fmt: Format,
    limits: Limits,
    defaults: Mapping[Format, str],
    custom: Template,
    variables_at: Callable[[Step], dict[str, Any]],
    document_at: Callable[[Step], dict[str, Any]],
    footer: str,
    failures: list[str],
) -> str:
    """The body in ``fmt``: the JSON document, or the (custom, else default) template."""
    if fmt == "json":
        return _json_body(limits.body, document_at, custom.body, variables_at, failures)
    return _body(fmt, limits.body, defaults[fmt], custom.body, variables_at, footer, failures)


# --- digests -----------------------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def digest_summary(digest: Digest) -> str:
    """``digest: 12 alerts (rule sanctions)``, ``quiet hours ended: 5 alerts``, ``storm:
    240 hits from feed X``."""
    label = one_line(digest.label, 120)
    if digest.reason == "quiet-hours":
        return f"quiet hours ended: {_plural(digest.total, 'alert')}"
    if digest.reason == "storm":
        feeds = "feeds" if "," in label else "feed"
        return f"storm: {_plural(digest.total, 'hit')}" + (
            f" from {feeds} {label}" if label else ""
        )
    if digest.reason == "digest":
        # The label says what was batched: "rule sanctions", "channel desk".
        return f"digest: {_plural(digest.total, 'alert')}" + (f" ({label})" if label else "")
    return f"{one_line(digest.reason, 60)}: {_plural(digest.total, 'alert')}"


def _shown(items: Sequence[PendingDelivery], step: Step) -> Sequence[PendingDelivery]:
    if step[1] >= 1.0 or not items:
        return items
    return items[: max(1, int(len(items) * step[1]))]


def _digest_vars(digest: Digest, fmt: Format, step: Step, footer: str) -> dict[str, Any]:
    caps = _Caps.at(step, item=True)
    items = _shown(digest.items, step)
    summary = digest_summary(digest)
    return {
        "kind": "digest",
        "format": fmt,
        "delivery_id": digest.id,
        "key": digest.key,
        "channel": one_line(digest.channel, 200),
        "reason": digest.reason,
        "label": one_line(digest.label, 200),
        "summary": summary,
        "created_at": digest.created_at,
        "items": [_alert_vars(item, fmt, caps) for item in items],
        "total": digest.total,
        "more": max(0, digest.total - len(items)),
        "footer": footer,
    }


def _json_digest(digest: Digest, step: Step) -> dict[str, Any]:
    items = _shown(digest.items, step)
    caps = _Caps.at(step, item=True)
    return {
        "kind": "digest",
        "id": digest.id,
        "key": digest.key,
        "channel": digest.channel,
        "reason": digest.reason,
        "label": digest.label,
        "title": digest_summary(digest),
        "created_at": digest.created_at,
        "total": digest.total,
        "more": max(0, digest.total - len(items)),
        "items": [_json_alert(item, caps) for item in items],
    }


def render_digest(
    digest: Digest,
    fmt: Format = "text",
    *,
    limits: Limits = DEFAULT_LIMITS,
    template: Template | None = None,
) -> Message:
    """The message of a digest (several alerts of one channel) for a channel of ``fmt``."""
    failures: list[str] = []
    custom = template or Template()
    footer = _footer("Digest", digest.id, digest.key, fmt)
    title_vars = _digest_vars(digest, "text", _FULL, footer) | {"format": fmt}
    title = _title(fmt, limits.title, DIGEST_TITLE, custom.title, title_vars, failures)

    def variables_at(step: Step) -> dict[str, Any]:
        return _digest_vars(digest, fmt, step, footer)

    def document_at(step: Step) -> dict[str, Any]:
        return _json_digest(digest, step)

    body = _any_body(
        fmt, limits, DIGEST_TEMPLATES, custom, variables_at, document_at, footer, failures
    )
    return Message(title, body, _BODY_FORMATS[fmt])
