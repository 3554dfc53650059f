"""Alert messages for one delivery or digest, in the format of the channel. Pure.

Every message says why the alert fired: rule and severity, the matched terms and a snippet
around them (terms highlighted), feed, link, published time and time seen, and ends with a
footer carrying the delivery id and idempotency key (``Delivery #12 · key hit-5-mail-0``)
for support questions and receiver-side de-duplication.

The format (:mod:`~monitor.deliver.render_formats`), escaping
(:mod:`~monitor.deliver.render_escape`), templates (:mod:`~monitor.deliver.render_templates`),
variables (:mod:`~monitor.deliver.render_vars`) and shortening
(:mod:`~monitor.deliver.render_fit`) each have their own module; this one puts a message
together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from monitor.deliver.render_escape import clean_lines, markdown_escape, no_mentions, one_line
from monitor.deliver.render_fit import FULL, Caps, Step, fit, json_body, render_body, render_title
from monitor.deliver.render_formats import BODY_FORMATS, DEFAULT_LIMITS, Format, Limits, Message
from monitor.deliver.render_templates import (
    ALERT_TEMPLATES,
    ALERT_TITLE,
    DIGEST_TEMPLATES,
    DIGEST_TITLE,
    finalizer,
)
from monitor.deliver.render_vars import alert_vars, footer_line, json_alert
from monitor.models import Digest, PendingDelivery, Template
from monitor.text import stamp


def _notice(d: PendingDelivery, fmt: Format, limits: Limits) -> Message:
    """A system notice (feed health...): its text and the delivery id, built-in layout."""
    title = finalizer(fmt, "title")(one_line(d.title, limits.title))
    title = one_line(f"[news-monitor] {title}", limits.title)
    if fmt == "json":
        body = json_body(
            limits.body, lambda step: json_alert(d, Caps.at(step)), None, lambda _: {}, []
        )
        return Message(title, body, BODY_FORMATS[fmt])
    footer = footer_line("Delivery", d.id, d.key, fmt)

    def render_at(step: Step) -> str:
        text = clean_lines(d.notice, Caps.at(step).notice)
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

    return Message(title, fit(fmt, limits.body, render_at, "", footer), BODY_FORMATS[fmt])


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
    footer = footer_line("Delivery", d.id, d.key, fmt)
    title_vars = alert_vars(d, "text", Caps.at(FULL)) | {
        "title": one_line(d.title, limits.title + 1),
        "format": fmt,
    }
    title = render_title(fmt, limits.title, ALERT_TITLE, custom.title, title_vars, failures)

    def variables_at(step: Step) -> dict[str, Any]:
        return alert_vars(d, fmt, Caps.at(step)) | {"footer": footer}

    def document_at(step: Step) -> dict[str, Any]:
        return json_alert(d, Caps.at(step))

    body = _any_body(
        fmt, limits, ALERT_TEMPLATES, custom, variables_at, document_at, footer, failures
    )
    return Message(title, body, BODY_FORMATS[fmt])


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
        return json_body(limits.body, document_at, custom.body, variables_at, failures)
    return render_body(fmt, limits.body, defaults[fmt], custom.body, variables_at, footer, failures)


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
    caps = Caps.at(step, item=True)
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
        "created_at": stamp(digest.created_at),
        "items": [alert_vars(item, fmt, caps) for item in items],
        "total": digest.total,
        "more": max(0, digest.total - len(items)),
        "footer": footer,
    }


def _json_digest(digest: Digest, step: Step) -> dict[str, Any]:
    items = _shown(digest.items, step)
    caps = Caps.at(step, item=True)
    return {
        "kind": "digest",
        "id": digest.id,
        "key": digest.key,
        "channel": digest.channel,
        "reason": digest.reason,
        "label": digest.label,
        "title": digest_summary(digest),
        "created_at": stamp(digest.created_at),
        "total": digest.total,
        "more": max(0, digest.total - len(items)),
        "items": [json_alert(item, caps) for item in items],
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
    footer = footer_line("Digest", digest.id, digest.key, fmt)
    title_vars = _digest_vars(digest, "text", FULL, footer) | {"format": fmt}
    title = render_title(fmt, limits.title, DIGEST_TITLE, custom.title, title_vars, failures)

    def variables_at(step: Step) -> dict[str, Any]:
        return _digest_vars(digest, fmt, step, footer)

    def document_at(step: Step) -> dict[str, Any]:
        return _json_digest(digest, step)

    body = _any_body(
        fmt, limits, DIGEST_TEMPLATES, custom, variables_at, document_at, footer, failures
    )
    return Message(title, body, BODY_FORMATS[fmt])
