"""Feed-health notices with dampening. Pure: the stored state and the clock are arguments.

One notice when a feed has failed ``failures`` times in a row, one when it recovers; one
when it has published nothing new for its ``silence`` period, one when it publishes again;
one when a feed is stopped for good (410 Gone). Never one per failed poll: the
``failing_alerted`` / ``quiet_alerted`` flags stored with the feed remember what was said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from monitor.models import FeedState
from monitor.text import stamp, stamp_or_none


@dataclass(frozen=True)
class Notice:
    kind: str
    subject: str
    title: str
    body: str


@dataclass(frozen=True)
class HealthDecision:
    notices: list[Notice] = field(default_factory=list)
    #: Flags to store on the feed (failing_alerted, quiet_alerted).
    flags: dict[str, int] = field(default_factory=dict)


def _span(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def feed_health(
    name: str,
    url: str,
    state: FeedState,
    now: datetime,
    *,
    failures: int,
    silence: float | None,
    newly_stopped: bool = False,
) -> HealthDecision:
    """What to tell the operator after a poll, given the feed's stored state after it."""
    notices: list[Notice] = []
    flags: dict[str, int] = {}
    _errors(name, url, state, failures, newly_stopped, notices, flags)
    if silence:
        _silence(name, url, state, now, silence, notices, flags)
    return HealthDecision(notices, flags)


def _errors(
    name: str,
    url: str,
    state: FeedState,
    failures: int,
    newly_stopped: bool,
    notices: list[Notice],
    flags: dict[str, int],
) -> None:
    """The notice of a feed stopped for good, failing, or recovered, if one is due."""
    errors = state.consecutive_errors
    if newly_stopped:
        notices.append(
            Notice(
                "feed-stopped",
                name,
                f"feed {name} stopped: the server says it is gone",
                f"Feed {name} ({url}) answered 410 Gone and is no longer polled.\n"
                f"{state.last_error or ''}\n"
                "If it moved, fix its URL in the settings (a changed URL is polled again); "
                f"if it comes back at this URL, `news-monitor feeds resume {name}`.",
            )
        )
    elif errors >= failures and not state.failing_alerted:
        since = stamp(state.last_success) if state.last_success else "never"
        notices.append(
            Notice(
                "feed-failing",
                name,
                f"feed {name} is failing ({errors} errors in a row)",
                f"Feed {name} ({url}) has failed {errors} times in a row; last success: {since}.\n"
                f"Last error ({state.last_error_kind or 'error'}): "
                f"{state.last_error or '-'}\n"
                "It keeps being retried with backoff; `news-monitor feeds` shows its state. "
                "You will be told once when it recovers.",
            )
        )
        flags["failing_alerted"] = 1
    elif errors == 0 and state.failing_alerted:
        notices.append(
            Notice(
                "feed-recovered",
                name,
                f"feed {name} recovered",
                f"Feed {name} ({url}) was fetched successfully again.",
            )
        )
        flags["failing_alerted"] = 0


def _silence(
    name: str,
    url: str,
    state: FeedState,
    now: datetime,
    silence: float,
    notices: list[Notice],
    flags: dict[str, int],
) -> None:
    """The notice of a feed silent for ``silence`` seconds, or publishing again, if due."""
    last_new = state.last_new
    quiet_for = (now - last_new).total_seconds() if last_new else None
    if quiet_for is not None and quiet_for >= silence and not state.quiet_alerted:
        notices.append(
            Notice(
                "feed-silent",
                name,
                f"feed {name} has published nothing for {_span(quiet_for)}",
                f"Feed {name} ({url}) has had no new article since {stamp_or_none(last_new)} "
                f"(expected within {_span(silence)}). The feed may be stale or moved.",
            )
        )
        flags["quiet_alerted"] = 1
    elif quiet_for is not None and quiet_for < silence and state.quiet_alerted:
        notices.append(
            Notice(
                "feed-active",
                name,
                f"feed {name} publishes again",
                f"Feed {name} ({url}) has new articles again.",
            )
        )
        flags["quiet_alerted"] = 0
