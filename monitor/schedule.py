"""When to poll a feed next. Pure: every input, the clock included, is an argument.

* After a success, the configured interval, raised (never lowered) by what the feed
  says about its own freshness: ``Cache-Control: max-age``, ``Expires`` and RSS ``<ttl>``,
  capped at :data:`MAX_HINT` so a typo in a feed cannot park it for a year.
* After an error, exponential backoff per feed: interval * 2^(errors - 1), capped at
  ``max_backoff``.
* ``Retry-After`` (429, 503) is a floor: never poll again inside the window.

Also the clocks of alerting: digest schedules (cron, read by APScheduler's CronTrigger)
and channels' quiet hours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from monitor.models import QuietHours

#: The longest a feed's own caching hints may stretch its interval.
MAX_HINT = 24 * 3600.0
_TTL = re.compile(rb"<ttl>\s*(\d{1,7})\s*</ttl>", re.IGNORECASE)
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def rss_ttl(content: bytes) -> int | None:
    """The channel's RSS ``<ttl>`` in minutes, read from the document head (before the
    first item), or None."""
    head = content[:65536]
    item = head.find(b"<item")
    if item != -1:
        head = head[:item]
    m = _TTL.search(head)
    return int(m.group(1)) if m else None


def cache_hint(headers: Mapping[str, str], ttl_minutes: int | None, now: datetime) -> float:
    """Seconds the feed asks to be left alone (0 if it says nothing usable)."""
    lower = {k.lower(): v for k, v in headers.items()}
    hints = [0.0]
    control = lower.get("cache-control", "")
    if "no-cache" not in control.lower() and "no-store" not in control.lower():
        if m := _MAX_AGE.search(control):
            hints.append(float(m.group(1)))
        elif expires := lower.get("expires"):
            try:
                when = parsedate_to_datetime(expires)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None and when.tzinfo is not None:
                hints.append((when - now).total_seconds())
    if ttl_minutes and ttl_minutes > 0:
        hints.append(ttl_minutes * 60.0)
    return min(max(hints), MAX_HINT)


def next_poll(
    now: datetime,
    *,
    interval: float,
    errors: int = 0,
    hint: float = 0.0,
    retry_after: float | None = None,
    max_backoff: float = 6 * 3600.0,
) -> datetime:
    """The next time to poll (before jitter), given the outcome of the poll just done."""
    if errors > 0:
        delay = min(max_backoff, interval * 2 ** min(errors - 1, 30))
        delay = max(delay, interval)
    else:
        delay = max(interval, hint)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


# --- alert schedules: digests (cron) and quiet hours --------------------------------------

_CLOCK = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def zone(name: str) -> tzinfo | None:
    """The IANA time zone ``name`` (Europe/Kyiv, UTC), or None if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_quiet_hours(spec: str, timezone: str = "UTC") -> QuietHours | None:
    """'22:00-07:00' -> QuietHours; None if it is not two HH:MM times."""
    m = _CLOCK.match(spec)
    if m is None:
        return None
    start = time(int(m.group(1)), int(m.group(2)))
    end = time(int(m.group(3)), int(m.group(4)))
    return None if start == end else QuietHours(start, end, timezone)


def quiet_until(quiet: QuietHours, now: datetime) -> datetime | None:
    """When the quiet window that ``now`` falls in ends (UTC), or None outside it."""
    tz = zone(quiet.timezone) or UTC
    local = now.astimezone(tz)
    today = local.date()
    for day in (today - timedelta(days=1), today):
        begin = datetime.combine(day, quiet.start, tz)
        end_day = day if quiet.end > quiet.start else day + timedelta(days=1)
        finish = datetime.combine(end_day, quiet.end, tz)
        if begin <= local < finish:
            return finish.astimezone(UTC)
    return None


def cron_error(expression: str, timezone: str = "UTC") -> str | None:
    """Why ``expression`` is not a usable cron schedule (five fields), or None."""
    try:
        CronTrigger.from_crontab(expression, timezone=zone(timezone) or UTC)
    except ValueError as exc:
        return str(exc)
    return None


def next_fire(expression: str, timezone: str, now: datetime) -> datetime:
    """The first time from ``now`` on that the cron ``expression`` names (UTC; ``now``
    itself if it is one: a batch deferred then goes out at once, not a period later)."""
    trigger = CronTrigger.from_crontab(expression, timezone=zone(timezone) or UTC)
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    assert fire is not None  # a five-field cron expression always fires again
    return fire.astimezone(UTC).replace(microsecond=0)
