"""Alert decisions. Pure: the store reads the state, asks, and writes what it is told
(explicit intents: steps to take, hits to hold or release, windows, storm digests).

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

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime

from monitor.models import AlertPolicy, ChannelConfig
from monitor.schedule import next_fire, quiet_until
from monitor.text import unstamp

#: Alerts listed in one digest message (the rest are counted).
DIGEST_ITEMS = 50


@dataclass(frozen=True)
class StoryStep:
    """One step of a rule's alerting on a story."""

    #: The hit the step goes with.
    hit: int
    #: 0: the rule's first alert on the story; N: the follow-up at N sources.
    step: int
    #: False: recorded as taken without an alert (a threshold the first alert already
    #: covers, one passed over on the way to a higher one, or one whose hit is being
    #: alerted anyway).
    send: bool


@dataclass(frozen=True)
class StoryState:
    """What the store knows of one story when a poll adds to it."""

    #: Distinct sources the story has now.
    sources: int
    #: Rule -> its hits on the story held back for more sources, oldest first.
    held: Mapping[str, Sequence[int]]
    #: Rule -> the steps already taken for (story, rule).
    taken: Mapping[str, Set[int]]
    #: Rule -> its newest hit on the story (follow-ups go with it); read only for rules
    #: with follow-ups.
    newest: Mapping[str, int]


@dataclass(frozen=True)
class RuleDecision:
    """What to do now about one rule's hits on one story."""

    rule: str
    policy: AlertPolicy
    #: New hits to hold back until the story has ``policy.min_sources`` sources.
    hold: tuple[int, ...] = ()
    #: Steps to take, in order (each sent one may still be muted by the realert window).
    steps: tuple[StoryStep, ...] = ()
    #: Held hits decided now (alerted or passed over): no longer held.
    release: tuple[int, ...] = ()


def story_steps(
    policy: AlertPolicy,
    sources: int,
    pending: Sequence[int],
    newest: int,
    taken: Set[int],
) -> list[StoryStep]:
    """The steps to take now for one rule on one story, once the story has at least
    ``policy.min_sources`` sources (below that, hits are held: the store keeps them
    pending and asks again when the story grows).

    ``pending``: the rule's hits on the story not decided yet (held back, or just
    stored), oldest first; ``newest``: its newest hit on the story (follow-ups go with
    it); ``sources``: distinct sources the story has now; ``taken``: the steps already
    taken for (story, rule). Every pending hit is decided by this call: alerted, or
    (once per story) stored without an alert.
    """
    if sources < policy.min_sources:
        return []
    first_now = 0 not in taken
    out: list[StoryStep] = []
    if not policy.once_per_story:
        out += [StoryStep(hit, 0, True) for hit in pending]
    elif first_now and pending:
        out.append(StoryStep(pending[0], 0, True))
    alerted_now = {step.hit for step in out}
    reached = follow_ups_due(policy, sources, taken)
    for threshold in reached:
        silent = first_now or threshold != reached[-1] or newest in alerted_now
        out.append(StoryStep(newest, threshold, not silent))
    return out


def follow_ups_due(policy: AlertPolicy, sources: int, taken: Set[int]) -> list[int]:
    """The follow-up thresholds the story has reached and the rule has not taken."""
    return [t for t in policy.follow_up if t <= sources and t not in taken]


def story_decisions(
    state: StoryState,
    new_hits: Mapping[str, Sequence[int]],
    grew: bool,
    policies: Mapping[str, AlertPolicy] | None,
    baseline: bool,
) -> list[RuleDecision]:
    """What the story's hits now call for, rule by rule (sorted): for the rules that
    just hit it (``new_hits``), the rules with hits held back on it, and, when it gained
    a source (``grew``), the rules that alerted it (follow-ups).

    ``policies``: every loaded rule by name (None: the default policy for every rule);
    hits of a rule no longer loaded stay held. With ``baseline`` (a feed's first poll)
    the new hits were stored muted and are not the story's alert: a later article of
    the story from a feed past its first poll is alerted; hits held on the story by
    other feeds still go out if it now has enough sources."""
    if baseline:
        new_hits = {}
    rules = set(new_hits) | set(state.held) | (set(state.taken) if grew else set())
    out: list[RuleDecision] = []
    for rule in sorted(rules):
        policy = AlertPolicy() if policies is None else policies.get(rule)
        if policy is None:
            if rule not in new_hits:
                continue  # the rule was removed or disabled: its held hits wait
            policy = AlertPolicy()
        fresh = tuple(new_hits.get(rule, ()))
        if state.sources < policy.min_sources:
            out.append(RuleDecision(rule, policy, hold=fresh))
            continue
        held = tuple(state.held.get(rule, ()))
        steps = story_steps(
            policy,
            state.sources,
            held + fresh,
            state.newest.get(rule, 0),
            state.taken.get(rule, set()),
        )
        out.append(RuleDecision(rule, policy, steps=tuple(steps), release=held))
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


@dataclass(frozen=True)
class RealertVerdict:
    """Whether a hit's first alert goes out under its rule's realert window."""

    #: None: alert it (and remember ``window`` for its key value); else why it is
    #: stored without an alert.
    muted: str | None
    window: float


def realert_verdict(
    policy: AlertPolicy,
    value: str,
    last_at: str | None,
    window: float,
    now: datetime,
) -> RealertVerdict:
    """:func:`realert` for the hit whose key (``policy.realert_key``) is ``value``;
    ``last_at``: when that value was last alerted (stored text), if it was."""
    alert, opened = realert(policy, unstamp(last_at) if last_at else None, window, now)
    if alert:
        return RealertVerdict(None, opened)
    reason = (
        f"realert: {policy.realert_key} {value} was alerted at {last_at} (window {opened:.0f}s)"
    )
    return RealertVerdict(reason, opened)


@dataclass(frozen=True)
class StormFold:
    """A channel's alerts of one poll folded into digests of at most DIGEST_ITEMS."""

    channel: str
    #: Delivery ids, one list per digest, in order.
    chunks: tuple[tuple[int, ...], ...]


def storm(by_channel: Mapping[str, Sequence[int]], cap: int) -> tuple[list[int], list[StormFold]]:
    """The storm cap: the deliveries that go out as they are, and for every channel that
    got more than ``cap`` alerts from one poll, the digests they are folded into (every
    alert listed in one)."""
    kept: list[int] = []
    folds: list[StormFold] = []
    for channel, ids in by_channel.items():
        if len(ids) <= cap:
            kept += ids
            continue
        chunks = tuple(
            tuple(ids[start : start + DIGEST_ITEMS]) for start in range(0, len(ids), DIGEST_ITEMS)
        )
        folds.append(StormFold(channel, chunks))
    return kept, folds


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
