"""Send pending alerts through apprise. apprise lives here and nowhere else.

A delivery is marked sent only when apprise reports success; otherwise it stays pending
with a later ``next_attempt_at`` (exponential backoff), so nothing is lost when a mail
server or webhook is down. Channels are sent concurrently, so one slow channel does not
hold up the others.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import apprise
from apprise.decorators import notify

from monitor.errors import NotifyError
from monitor.models import ChannelConfig, PendingDelivery
from monitor.render import Message, render

log = logging.getLogger(__name__)
_print_lock = threading.Lock()


@notify(on="console", name="news-monitor terminal")  # type: ignore[untyped-decorator,no-untyped-call]
def _console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """`console://`: print the alert to standard output (the terminal or the journal)."""
    with _print_lock:
        sys.stdout.write(f"\n=== ALERT {title}\n{body}\n")
        sys.stdout.flush()
    return True


def privacy_url(url: str) -> str:
    """The channel URL with its secrets masked, the only form that may be logged."""
    try:
        plugin = apprise.Apprise.instantiate(url)
    except Exception:  # apprise raises assorted errors for malformed URLs
        plugin = None
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://(unparseable URL)"
    return str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]


class Sender(Protocol):
    def send(self, message: Message) -> bool: ...


class Channel:
    """One named channel: an apprise object built from its URL."""

    def __init__(self, config: ChannelConfig) -> None:
        self.name = config.name
        self.shown = privacy_url(config.url)
        self._apprise = apprise.Apprise()
        if not self._apprise.add(config.url):
            raise NotifyError(
                f"channel {config.name!r}: apprise does not understand {self.shown}; "
                "see https://github.com/caronc/apprise/wiki for URL formats"
            )

    def send(self, message: Message) -> bool:
        # The alert is plain text: say so, or apprise treats it as HTML for email and the
        # line breaks collapse (and markup from feed titles would reach the HTML part).
        result = self._apprise.notify(
            body=message.body, title=message.title, body_format=apprise.NotifyFormat.TEXT
        )
        return bool(result)


def build_channels(configs: tuple[ChannelConfig, ...]) -> tuple[dict[str, Channel], list[str]]:
    """Channels by name, and an error message for each channel that cannot be built."""
    channels: dict[str, Channel] = {}
    errors: list[str] = []
    for config in configs:
        try:
            channels[config.name] = Channel(config)
        except NotifyError as exc:
            errors.append(str(exc))
    return channels, errors


class Outbox(Protocol):
    """What the delivery loop needs from storage."""

    def due_deliveries(
        self,
        now: datetime,
        limit: int = ...,
        *,
        channels: Collection[str] | None = ...,
        exclude: Collection[str] = ...,
    ) -> list[PendingDelivery]: ...
    def mark_sent(self, delivery_id: int, now: datetime) -> None: ...
    def mark_failed(self, delivery_id: int, error: str, retry_at: datetime) -> None: ...


def retry_delay(attempts: int, minimum: float, maximum: float) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling, capped."""
    return float(min(maximum, minimum * (2 ** max(0, attempts - 1))))


async def deliver_due(
    outbox: Outbox,
    channels: Mapping[str, Sender],
    now: Callable[[], datetime],
    *,
    retry_min: float = 30.0,
    retry_max: float = 3600.0,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> tuple[int, int]:
    """Send every due delivery once (of the channels ``only``, if given, and never of
    ``exclude``). Returns (sent, failed)."""
    due = outbox.due_deliveries(now(), channels=only, exclude=exclude)
    by_channel: dict[str, list[PendingDelivery]] = {}
    for delivery in due:
        by_channel.setdefault(delivery.channel, []).append(delivery)

    async def run(name: str, items: list[PendingDelivery]) -> tuple[int, int]:
        sent = failed = 0
        channel = channels.get(name)
        for delivery in items:
            error = None
            if channel is None:
                error = f"channel {name!r} is not configured"
            else:
                try:
                    ok = await asyncio.to_thread(channel.send, render(delivery))
                except Exception as exc:  # a plugin bug must not kill the loop
                    ok = False
                    error = f"{type(exc).__name__} while sending"
                if not ok and error is None:
                    error = "apprise reported failure"
            if error is None:
                outbox.mark_sent(delivery.id, now())
                sent += 1
                log.info("delivery_sent id=%s channel=%s rule=%s", delivery.id, name, delivery.rule)
            else:
                attempts = delivery.attempts + 1
                delay = retry_delay(attempts, retry_min, retry_max)
                outbox.mark_failed(delivery.id, error, now() + timedelta(seconds=delay))
                failed += 1
                log.warning(
                    "delivery_failed id=%s channel=%s attempts=%s retry_in=%.0fs error=%r",
                    delivery.id,
                    name,
                    attempts,
                    delay,
                    error,
                )
        return sent, failed

    results = await asyncio.gather(*(run(n, items) for n, items in by_channel.items()))
    return sum(r[0] for r in results), sum(r[1] for r in results)
