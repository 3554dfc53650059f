"""The variables of an alert for a template (listed in
:mod:`monitor.deliver.render_templates`), and the fields of its JSON document, each value
cut to the caps of a shrinking step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from monitor.deliver.render_escape import (
    EscapedMarkdown,
    highlight,
    markdown_escape,
    one_line,
    web_url,
)
from monitor.deliver.render_fit import Caps
from monitor.deliver.render_formats import Format
from monitor.models import PendingDelivery
from monitor.text import stamp, stamp_or_none

#: Shown instead of a link whose scheme is not http or https (html and markdown).
LINK_REMOVED = "(link removed: not http/https)"


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


def footer_line(label: str, number: int, key: str, fmt: Format) -> str:
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
    return link, EscapedMarkdown(url) if fmt == "markdown" else url


def alert_vars(d: PendingDelivery, fmt: Format, caps: Caps) -> dict[str, Any]:
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
        "highlighted": highlight(snippet, d.terms, fmt),
        "published": stamp(d.published) if d.published else "",
        "seen_at": stamp(d.seen_at),
        "story_id": d.story_id,
        "sources": d.sources,
        "outlets": outlets,
        "story": _story(d, outlets),
        "step": d.step,
        "notice": one_line(d.notice, caps.notice),
    }


def json_alert(d: PendingDelivery, caps: Caps) -> dict[str, Any]:
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
        "published": stamp_or_none(d.published),
        "seen_at": stamp(d.seen_at),
        "story": {
            "id": d.story_id,
            "sources": d.sources,
            "outlets": [cut(o, caps.field) for o in d.outlets[: caps.outlets]],
        },
        "step": d.step,
        "notice": cut(d.notice, caps.notice),
    }
