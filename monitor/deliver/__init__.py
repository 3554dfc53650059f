"""Alerts out: each pending delivery rendered for its channel and sent through apprise.

* ``send``: :func:`deliver_due`, the delivery loop's round over the outbox (retries,
  dead deliveries, digests and quiet hours at send time);
* ``channels``: :class:`Channel`, apprise built from the settings (the only module that
  imports apprise);
* ``render_message``: :func:`render` and :func:`render_digest`, a message put together
  from ``render_formats`` (formats, limits), ``render_escape`` (escaping, highlighting),
  ``render_templates`` (the Jinja2 sandbox, default layouts), ``render_vars`` (template
  variables) and ``render_fit`` (shortening to the channel's limits). Pure.

The names below are imported from their modules when first used, not with the package:
the settings check templates with :mod:`monitor.deliver.render_templates`, and the
commands that never send should not pay for importing apprise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.lazy import lazy_names

if TYPE_CHECKING:
    from monitor.deliver.channels import Channel, Sender, build_channels, privacy_url
    from monitor.deliver.render_formats import FORMATS, Format, Limits, Message, format_for_url
    from monitor.deliver.render_message import digest_summary, render, render_digest
    from monitor.deliver.render_templates import check_template
    from monitor.deliver.send import (
        DUE_PAGE,
        GIVE_UP_AFTER,
        DeadHandler,
        DeliveryMetrics,
        deliver_due,
        message_for,
        retry_delay,
    )

__all__ = [
    "DUE_PAGE",
    "FORMATS",
    "GIVE_UP_AFTER",
    "Channel",
    "DeadHandler",
    "DeliveryMetrics",
    "Format",
    "Limits",
    "Message",
    "Sender",
    "build_channels",
    "check_template",
    "deliver_due",
    "digest_summary",
    "format_for_url",
    "message_for",
    "privacy_url",
    "render",
    "render_digest",
    "retry_delay",
]

#: The module of this package that holds each name of ``__all__``.
_HOMES = {
    **dict.fromkeys(("Channel", "Sender", "build_channels", "privacy_url"), "channels"),
    **dict.fromkeys(("FORMATS", "Format", "Limits", "Message", "format_for_url"), "render_formats"),
    **dict.fromkeys(("digest_summary", "render", "render_digest"), "render_message"),
    "check_template": "render_templates",
    **dict.fromkeys(
        (
            "DUE_PAGE",
            "GIVE_UP_AFTER",
            "DeadHandler",
            "DeliveryMetrics",
            "deliver_due",
            "message_for",
            "retry_delay",
        ),
        "send",
    ),
}


if not TYPE_CHECKING:  # mypy checks the names imported above, not any name at all
    __getattr__ = lazy_names(__name__, _HOMES)
