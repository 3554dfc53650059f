"""Send pending alerts through apprise. apprise lives here and nowhere else.

A delivery is marked sent only when apprise reports success; otherwise it stays pending
with a later ``next_attempt_at`` (exponential backoff), so nothing is lost when a mail
server or webhook is down, until ``delivery.max_age`` (then it is dead and the operator is
told). Channels are sent concurrently, so one slow channel does not hold up the others.
Digest schedules and quiet hours defer alerts into digests here, at send time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

import apprise
from apprise.decorators import notify

from monitor.errors import NotifyError, StorageBusy
from monitor.models import AlertPolicy, ChannelConfig, Digest, PendingDelivery
from monitor.policy import hold_back, quiet_end
from monitor.render import Format, Limits, Message, format_for_url, render, render_digest
from monitor.text import unstamp

log = logging.getLogger(__name__)
T = TypeVar("T")
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
    """What the delivery loop needs of a channel."""

    config: ChannelConfig
    format: Format
    limits: Limits

    def send(self, message: Message) -> bool: ...


class Channel:
    """One named channel: an apprise object built from its URL or config file."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.name = config.name
        self._apprise = apprise.Apprise()
        if config.config_file:
            self.shown = f"apprise config {config.config_file}"
            source = apprise.AppriseConfig()
            if not source.add(config.config_file) or not self._apprise.add(source):
                raise NotifyError(
                    f"channel {config.name!r}: cannot read the apprise config file "
                    f"{config.config_file}"
                )
            plugins = list(self._apprise)  # reads the file now: errors show at start
            if not plugins:
                raise NotifyError(
                    f"channel {config.name!r}: the apprise config file {config.config_file} "
                    "has no usable URL (see https://github.com/caronc/apprise/wiki/config)"
                )
            self.format: Format = _format(config.format) or "text"
        else:
            self.shown = privacy_url(config.url)
            if not self._apprise.add(config.url):
                raise NotifyError(
                    f"channel {config.name!r}: apprise does not understand {self.shown}; "
                    "see https://github.com/caronc/apprise/wiki for URL formats"
                )
            plugins = list(self._apprise)
            self.format = _format(config.format) or format_for_url(config.url)
        # The tightest limits of the services behind the channel (apprise knows them).
        self.limits = Limits(
            title=min([Limits.title, *(p.title_maxlen for p in plugins if p.title_maxlen > 0)]),
            body=min([Limits.body, *(p.body_maxlen for p in plugins if p.body_maxlen > 0)]),
        )

    def send(self, message: Message) -> bool:
        # Say what the body is, or apprise guesses: plain text read as HTML collapses its
        # line breaks, and markup from feed titles would reach an HTML part.
        result = self._apprise.notify(
            body=message.body,
            title=message.title,
            body_format=apprise.NotifyFormat(message.body_format),
        )
        return bool(result)


def _format(name: str | None) -> Format | None:
    return name if name in ("text", "email", "markdown", "json") else None  # type: ignore[return-value]


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
        after: int = ...,
    ) -> list[PendingDelivery | Digest]: ...
    def mark_sent(self, delivery_id: int, now: datetime) -> None: ...
    def mark_failed(
        self,
        delivery_id: int,
        error: str,
        retry_at: datetime,
        *,
        now: datetime | None = ...,
        max_age: float | None = ...,
    ) -> bool: ...
    def defer(self, delivery_id: int, batch: str, release_at: datetime) -> None: ...
    def postpone(self, delivery_id: int, until: datetime) -> None: ...
    def release_batches(self, now: datetime, channels: Collection[str] | None = ...) -> int: ...
    def mute_silenced(self, now: datetime) -> int: ...


class DeliveryMetrics(Protocol):
    def delivery(self, channel: str, outcome: str) -> None: ...
    def alert_latency(self, seconds: float) -> None: ...


def _count_sent(
    metrics: DeliveryMetrics, delivery: PendingDelivery | Digest, channel: str, at: datetime
) -> None:
    """A sent delivery, and for each alert in it the time from its article first seen
    (not for scheduled or quiet-hours digests: they wait on purpose)."""
    if not isinstance(delivery, Digest) or delivery.reason == "storm":
        items = delivery.items if isinstance(delivery, Digest) else (delivery,)
        for item in items:
            seen = unstamp(item.seen_at) if not item.notice else None
            if seen is not None:
                metrics.alert_latency(max(0.0, (at - seen).total_seconds()))
    metrics.delivery(channel, "sent")  # last: a scrape that sees it sees the latency too


async def _recorded(action: Callable[[], T]) -> T:
    """Record the outcome of a send, trying again while another process holds the
    database (a long `prune`, a backup): a sent alert left pending would go out twice."""
    delay = 0.1
    while True:
        try:
            return action()
        except StorageBusy:
            log.warning("delivery_record_waiting (database locked; trying again)")
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


#: Failures in a row after which a channel's round ends (the rest wait for the next).
GIVE_UP_AFTER = 3
#: Due deliveries read from the outbox at a time.
DUE_PAGE = 100


def retry_delay(attempts: int, minimum: float, maximum: float) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling, capped."""
    return float(min(maximum, minimum * (2 ** max(0, attempts - 1))))


def message_for(
    item: PendingDelivery | Digest,
    channel: Sender,
    policies: Mapping[str, AlertPolicy],
) -> Message:
    """The alert as ``channel`` shows it: its format and limits, and the rule's template
    (else the channel's, else the default)."""
    if isinstance(item, Digest):
        return render_digest(
            item, channel.format, limits=channel.limits, template=channel.config.template
        )
    policy = policies.get(item.rule)
    template = (policy.template if policy else None) or channel.config.template
    return render(item, channel.format, limits=channel.limits, template=template)


#: Called with a delivery given up after ``max_age`` and its last error.
DeadHandler = Callable[[PendingDelivery | Digest, str], None]


async def deliver_due(
    outbox: Outbox,
    channels: Mapping[str, Sender],
    now: Callable[[], datetime],
    *,
    policies: Mapping[str, AlertPolicy] | None = None,
    retry_min: float = 30.0,
    retry_max: float = 3600.0,
    max_age: float = 2 * 86400.0,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
    on_dead: DeadHandler | None = None,
    stopping: Callable[[], bool] | None = None,
    metrics: DeliveryMetrics | None = None,
) -> tuple[int, int]:
    """Send every due delivery once (of the channels ``only``, if given, and never of
    ``exclude``). Returns (sent, failed).

    First silenced alerts are muted and digests whose time has come are made; then an
    alert that a digest schedule or quiet hours hold back is deferred to its digest
    instead of sent (monitor.policy.hold_back). A delivery that keeps failing is given
    up ``max_age`` after it was queued: marked dead, and ``on_dead`` is told. Once
    ``stopping()`` is true no further send starts (the one in flight is recorded)."""
    rules = policies or {}
    outbox.mute_silenced(now())
    outbox.release_batches(now(), channels=only)

    gave_up: set[str] = set()

    async def run(name: str, items: list[PendingDelivery | Digest]) -> tuple[int, int]:
        sent = failed = streak = 0
        channel = channels.get(name)
        for delivery in items:
            if stopping is not None and stopping():
                break
            if channel is not None and streak >= GIVE_UP_AFTER:
                # The service is down: the rest stay due for the next round instead of
                # each waiting out its own timeout now.
                gave_up.add(name)
                break
            error = None
            if channel is None:
                error = f"channel {name!r} is not configured"
            else:
                if _held(delivery, channel, rules, outbox, now()):
                    continue
                try:
                    message = message_for(delivery, channel, rules)
                    ok = await asyncio.to_thread(channel.send, message)
                except Exception as exc:  # a plugin bug must not kill the loop
                    ok = False
                    error = f"{type(exc).__name__} while sending"
                if not ok and error is None:
                    error = "apprise reported failure"
            what = delivery.rule if isinstance(delivery, PendingDelivery) else "digest"
            if error is None:
                await _recorded(partial(outbox.mark_sent, delivery.id, now()))
                sent += 1
                streak = 0
                if metrics is not None:
                    _count_sent(metrics, delivery, name, now())
                log.info("delivery_sent id=%s channel=%s rule=%s", delivery.id, name, what)
                continue
            attempts = delivery.attempts + 1
            delay = retry_delay(attempts, retry_min, retry_max)
            retry_at = now() + timedelta(seconds=delay)
            dead = await _recorded(
                partial(
                    outbox.mark_failed, delivery.id, error, retry_at, now=now(), max_age=max_age
                )
            )
            failed += 1
            streak += 1
            if metrics is not None:
                metrics.delivery(name, "dead" if dead else "failed")
            if dead:
                log.error(
                    "delivery_dead id=%s channel=%s rule=%s attempts=%s error=%r (given up "
                    "after delivery.max_age; `news-monitor deliveries retry %s` sends it again)",
                    delivery.id,
                    name,
                    what,
                    attempts,
                    error,
                    delivery.id,
                )
                if on_dead is not None:
                    on_dead(delivery, error)
                continue
            log.warning(
                "delivery_failed id=%s channel=%s attempts=%s retry_in=%.0fs error=%r",
                delivery.id,
                name,
                attempts,
                delay,
                error,
            )
        return sent, failed

    sent = failed = 0
    after = 0
    while True:
        # A page at a time, so a backlog drains at once rather than a page per interval;
        # each row is tried at most once per call.
        due = outbox.due_deliveries(now(), DUE_PAGE, channels=only, exclude=exclude, after=after)
        if due:
            after = max(d.id for d in due)
        by_channel: dict[str, list[PendingDelivery | Digest]] = {}
        for delivery in due:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        results = await asyncio.gather(*(run(n, items) for n, items in by_channel.items()))
        sent += sum(r[0] for r in results)
        failed += sum(r[1] for r in results)
        if len(due) < DUE_PAGE or gave_up or (stopping is not None and stopping()):
            return sent, failed


def _held(
    delivery: PendingDelivery | Digest,
    channel: Sender,
    rules: Mapping[str, AlertPolicy],
    outbox: Outbox,
    now: datetime,
) -> bool:
    """Defer an alert to its digest, or postpone a digest to the end of quiet hours, if
    the schedules say so; True if it is not to be sent now."""
    if isinstance(delivery, Digest):
        if delivery.reason == "quiet-hours":
            return False
        if any(item.severity == "urgent" for item in delivery.items):
            return False
        end = quiet_end(channel.config, now)
        if end is not None:
            outbox.postpone(delivery.id, end)
            return True
        return False
    if delivery.notice:
        return False  # system notices are never batched
    hold = hold_back(
        delivery.rule, delivery.severity, rules.get(delivery.rule), channel.config, now
    )
    if hold is None:
        return False
    batch, release_at = hold
    outbox.defer(delivery.id, batch, release_at)
    log.info(
        "delivery_deferred id=%s channel=%s batch=%r until=%s",
        delivery.id,
        channel.config.name,
        batch,
        release_at.isoformat(),
    )
    return True
