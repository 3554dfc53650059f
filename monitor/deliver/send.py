"""Send pending alerts: the delivery loop's round over the outbox.

A delivery is marked sent only when apprise reports success; otherwise it stays pending
with a later ``next_attempt_at`` (exponential backoff), so nothing is lost when a mail
server or webhook is down, until ``delivery.max_age`` (then it is dead and the operator is
told). Channels are sent concurrently, so one slow channel does not hold up the others.
Digest schedules and quiet hours defer alerts into digests here, at send time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

from monitor.deliver.channels import Sender
from monitor.deliver.render_formats import Message
from monitor.deliver.render_message import render, render_digest
from monitor.errors import StorageBusy
from monitor.models import AlertPolicy, Digest, PendingDelivery
from monitor.policy import hold_back, quiet_end

if TYPE_CHECKING:
    # The outbox's Protocol, and no more: the delivery loop works on any backend.
    from monitor.store.interface import Outbox

# The name the delivery log lines have always carried, which log filters may rely on.
log = logging.getLogger("monitor.deliver")
T = TypeVar("T")


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
            if not item.notice:
                seen = item.seen_at
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
    outbox.mute_silenced(now())
    outbox.release_batches(now(), channels=only)
    sending = _Round(
        outbox=outbox,
        channels=channels,
        now=now,
        rules=policies or {},
        retry_min=retry_min,
        retry_max=retry_max,
        max_age=max_age,
        on_dead=on_dead,
        stopping=stopping,
        metrics=metrics,
    )
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
        results = await asyncio.gather(*(sending.run(n, items) for n, items in by_channel.items()))
        sent += sum(r[0] for r in results)
        failed += sum(r[1] for r in results)
        if len(due) < DUE_PAGE or sending.gave_up or sending.stopped():
            return sent, failed


@dataclass
class _Round:
    """One call of :func:`deliver_due`: what the runs of its channels share."""

    outbox: Outbox
    channels: Mapping[str, Sender]
    now: Callable[[], datetime]
    rules: Mapping[str, AlertPolicy]
    retry_min: float
    retry_max: float
    max_age: float
    on_dead: DeadHandler | None
    stopping: Callable[[], bool] | None
    metrics: DeliveryMetrics | None
    #: Channels whose run ended early, after GIVE_UP_AFTER failures in a row.
    gave_up: set[str] = field(default_factory=set)

    def stopped(self) -> bool:
        return self.stopping is not None and self.stopping()

    async def run(self, name: str, items: list[PendingDelivery | Digest]) -> tuple[int, int]:
        """Send the due deliveries of channel ``name`` in turn; (sent, failed)."""
        sent = failed = streak = 0
        channel = self.channels.get(name)
        for delivery in items:
            if self.stopped():
                break
            if channel is not None and streak >= GIVE_UP_AFTER:
                # The service is down: the rest stay due for the next round instead of
                # each waiting out its own timeout now.
                self.gave_up.add(name)
                break
            if channel is None:
                error: str | None = f"channel {name!r} is not configured"
            elif _held(delivery, channel, self.rules, self.outbox, self.now()):
                continue
            else:
                error = await self._send(delivery, channel)
            if error is None:
                await self._sent(delivery, name)
                sent += 1
                streak = 0
            else:
                await self._failed(delivery, name, error)
                failed += 1
                streak += 1
        return sent, failed

    async def _send(self, delivery: PendingDelivery | Digest, channel: Sender) -> str | None:
        """Send one delivery: None if it went out, else why not."""
        try:
            message = message_for(delivery, channel, self.rules)
            ok = await asyncio.to_thread(channel.send, message)
        except Exception as exc:  # a plugin bug must not kill the loop
            return f"{type(exc).__name__} while sending"
        return None if ok else "apprise reported failure"

    async def _sent(self, delivery: PendingDelivery | Digest, name: str) -> None:
        await _recorded(partial(self.outbox.mark_sent, delivery.id, self.now()))
        if self.metrics is not None:
            _count_sent(self.metrics, delivery, name, self.now())
        log.info("delivery_sent id=%s channel=%s rule=%s", delivery.id, name, _what(delivery))

    async def _failed(self, delivery: PendingDelivery | Digest, name: str, error: str) -> None:
        """Record a failed send: due again after the backoff, or dead after ``max_age``."""
        attempts = delivery.attempts + 1
        delay = retry_delay(attempts, self.retry_min, self.retry_max)
        retry_at = self.now() + timedelta(seconds=delay)
        mark = self.outbox.mark_failed
        dead = await _recorded(
            partial(mark, delivery.id, error, retry_at, now=self.now(), max_age=self.max_age)
        )
        if self.metrics is not None:
            self.metrics.delivery(name, "dead" if dead else "failed")
        if not dead:
            log.warning(
                "delivery_failed id=%s channel=%s attempts=%s retry_in=%.0fs error=%r",
                delivery.id,
                name,
                attempts,
                delay,
                error,
            )
            return
        log.error(
            "delivery_dead id=%s channel=%s rule=%s attempts=%s error=%r (given up "
            "after delivery.max_age; `news-monitor deliveries retry %s` sends it again)",
            delivery.id,
            name,
            _what(delivery),
            attempts,
            error,
            delivery.id,
        )
        if self.on_dead is not None:
            self.on_dead(delivery, error)


def _what(delivery: PendingDelivery | Digest) -> str:
    """The rule of an alert, or "digest", for the log."""
    return delivery.rule if isinstance(delivery, PendingDelivery) else "digest"


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
