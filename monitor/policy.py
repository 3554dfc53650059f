"""Alert decisions. Pure: the store asks, with the state it has, and does what it is told.

Story alerts (a rule's hits on the articles of one story):

* ``once_per_story`` (the default): the rule's first hit on the story is alerted (step 0),
  later copies from other outlets are stored and not alerted;
* ``min_sources: N``: nothing is alerted until N distinct sources carry the story; then
  the rule's first hit on it goes out, saying how many sources carry it;
* ``follow_up: [3, 5]``: when the source count reaches 3, and again at 5, one follow-up
  (step 3, step 5) says "now 3 sources", on the rule's newest hit in the story. A
  threshold already reached when the first alert goes out is not followed up (that
  alert says the count).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from datetime import datetime

from monitor.models import AlertPolicy, ChannelConfig
from monitor.schedule import next_fire, quiet_until


def story_steps(
    policy: AlertPolicy,
    sources: int,
    pending: Sequence[int],
    newest: int,
    taken: Set[int],
) -> list[tuple[int, int]]:
    """The (hit id, step) alerts to create now for one rule on one story, once the story
    has at least ``policy.min_sources`` sources (below that, hits are held: the store
    keeps them pending and asks again when the story grows).

    ``pending``: the rule's hits on the story not decided yet (held back, or just
    stored), oldest first; ``newest``: its newest hit on the story (follow-ups go with
    it); ``sources``: distinct sources the story has now; ``taken``: the steps already
    taken for (story, rule). Every pending hit is decided by this call: alerted, or
    (once per story) stored without an alert. A threshold to record as taken without
    alerting comes back as (hit id, -threshold).
    """
    if sources < policy.min_sources:
        return []
    first_now = 0 not in taken
    out: list[tuple[int, int]] = []
    if not policy.once_per_story:
        out += [(hit, 0) for hit in pending]
    elif first_now and pending:
        out.append((pending[0], 0))
    alerted_now = {hit for hit, _ in out}
    reached = [t for t in policy.follow_up if t <= sources and t not in taken]
    for threshold in reached:
        # Recorded, not sent: a threshold the first alert already covers, one passed over
        # on the way to a higher one, or one whose hit is being alerted anyway.
        silent = first_now or threshold != reached[-1] or newest in alerted_now
        out.append((newest, -threshold if silent else threshold))
    return out


def realert(
    policy: AlertPolicy, last: datetime | None, window: float, now: datetime
) -> tuple[bool, float]:
    """Whether a hit may be alerted now under the rule's ``realert`` window, and the
    window to remember for its key value.

    ``last``: when the last alert for this (rule, key value) went out, with ``window``
    the window it opened. Inside that window the hit is stored, not alerted. An alert
    that comes back within one more window after it ended doubles the window (up to
    ``realert_max``): a story that keeps flaring is alerted less and less often; a quiet
    spell resets it.
    """
    if policy.realert <= 0:
        return True, 0.0
    if last is None:
        return True, policy.realert
    elapsed = (now - last).total_seconds()
    if elapsed < window:
        return False, window
    if policy.realert_max > policy.realert and elapsed < 2 * window:
        return True, min(policy.realert_max, window * 2)
    return True, policy.realert


def hold_back(
    rule: str,
    severity: str,
    policy: AlertPolicy | None,
    channel: ChannelConfig,
    now: datetime,
) -> tuple[str, datetime] | None:
    """Whether a due alert of ``rule`` on ``channel`` waits for a digest instead of going
    out now: the batch it joins ("reason:label") and when that batch is released.

    The rule's own digest schedule comes first; urgent alerts pass everything else; then
    the channel's digest schedule, then its quiet hours (the alerts held during them go
    out as one digest when they end)."""
    if policy is not None and policy.digest:
        return f"digest:rule {rule}", next_fire(policy.digest, policy.digest_timezone, now)
    if severity == "urgent":
        return None
    if channel.digest:
        return f"digest:channel {channel.name}", next_fire(channel.digest, channel.timezone, now)
    end = quiet_end(channel, now)
    if end is not None:
        return f"quiet-hours:{channel.name}", end
    return None


def quiet_end(channel: ChannelConfig, now: datetime) -> datetime | None:
    """When the channel's quiet hours that ``now`` falls in end; None if it is not in
    them (or the channel has none)."""
    if channel.quiet_hours is None:
        return None
    return quiet_until(channel.quiet_hours, now)
