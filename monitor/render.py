"""Alert text for one delivery: a title line and a plain-text body. Pure.

The body says why the alert fired: rule and severity, the matched terms and a snippet
around them, plus feed, link and times, and the delivery id for support questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.models import PendingDelivery

TITLE_LIMIT = 200
#: Matched terms shown in an alert; the rest are counted ("+7 more").
TERMS_SHOWN = 12
#: Outlets named in a story line; the rest are counted.
OUTLETS_SHOWN = 6
_LINEBREAKS = re.compile(r"[\r\n\t\x0b\x0c\x85\u2028\u2029]+")


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def one_line(text: str, limit: int) -> str:
    """No line breaks (they would forge mail headers), at most ``limit`` characters."""
    flat = _LINEBREAKS.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def render(d: PendingDelivery) -> Message:
    if d.notice:
        return Message(
            one_line(f"[news-monitor] {d.title}", TITLE_LIMIT),
            f"{d.notice}\nDelivery:  #{d.id}",
        )
    follow_up = f"now {d.step} sources: " if d.step else ""
    title = one_line(f"[{d.rule}] {follow_up}{d.title}", TITLE_LIMIT)
    lines = [
        f"Rule:      {d.rule} ({d.severity})",
        f"Article:   {one_line(d.title, 500)}",
        *([f"Story:     {_story(d)}"] if d.story_id is not None else []),
        f"Feed:      {d.feed}",
        f"Link:      {d.link or '(none)'}",
        f"Matched:   {_terms(d.terms)}",
        f"Why:       {one_line(d.snippet, 600)}",
        f"Published: {d.published or 'unknown'}   Seen: {d.seen_at}",
        f"Delivery:  #{d.id}",
    ]
    return Message(title, "\n".join(lines))


def _story(d: PendingDelivery) -> str:
    count = f"{d.sources} source{'s' if d.sources != 1 else ''}"
    shown = ", ".join(d.outlets[:OUTLETS_SHOWN])
    more = len(d.outlets) - OUTLETS_SHOWN
    if more > 0:
        shown += f" +{more} more"
    return f"#{d.story_id}, {count}" + (f" ({one_line(shown, 300)})" if shown else "")


def _terms(terms: tuple[str, ...]) -> str:
    if not terms:
        return "(no positive terms)"
    shown = ", ".join(terms[:TERMS_SHOWN])
    more = len(terms) - TERMS_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown
