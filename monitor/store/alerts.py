"""Story alerts: hits held, alerted, followed up or muted, and the deliveries they make."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from monitor.models import AlertPolicy
from monitor.policy import realert, story_steps
from monitor.store.base import DIGEST_ITEMS, StoreBase
from monitor.text import stamp, unstamp

#: What "the same" is for a rule's realert window (AlertPolicy.realert_key).
_REALERT_VALUES = {
    "rule": "h.rule",
    "story": "a.story_id",
    "feed": "a.feed",
    "source": "a.source",
    "link": "a.link",
}


def delivery_key(hit_id: int, channel: str, step: int = 0) -> str:
    """The idempotency key of a hit's alert (``step`` 0) or follow-up on ``channel``:
    the numbers come before the channel name, so no two keys can be alike."""
    return f"followup-{hit_id}-{step}-{channel}" if step else f"hit-{hit_id}-{channel}"


class AlertsMixin(StoreBase):
    def _story_alerts(
        self,
        story_id: int,
        new_hits: Mapping[str, list[int]],
        grew: bool,
        policies: Mapping[str, AlertPolicy] | None,
        now: datetime,
        baseline: bool,
        started: bool = False,
    ) -> list[int]:
        """Create the deliveries the story's hits now call for (monitor.policy): for the
        rules that just hit it, the rules with hits held back on it, and, when it gained
        a source, the rules that alerted it (follow-ups). Hits of a rule that is no
        longer loaded stay held. Costs the same however many copies the story has.

        With ``baseline`` the new hits are stored muted and do not count as the story's
        alert: a later article of the story from a feed past its first poll is alerted.
        Hits held on the story by other feeds still go out if it now has enough sources.
        ``started``: the story is the article's own, just made (one source, nothing held
        or alerted on it yet: nothing to look up)."""
        seen = stamp(now)
        if baseline:
            new_hits = {}  # stored muted (Store.save)
        held: dict[str, list[int]] = {}
        taken: dict[str, set[int]] = {}
        if started:
            sources = 1
        else:
            sources = self.db.execute(
                "SELECT sources FROM stories WHERE id = ?", [story_id]
            ).fetchone()[0]
            for hit_id, rule in self.db.execute(
                """SELECT h.id, h.rule FROM hits h JOIN articles a ON a.id = h.article_id
                   WHERE h.held = 1 AND a.story_id = ? ORDER BY h.id""",
                [story_id],
            ):
                held.setdefault(rule, []).append(hit_id)
            for rule, step in self.db.execute(
                "SELECT rule, step FROM story_alerts WHERE story_id = ?", [story_id]
            ):
                taken.setdefault(rule, set()).add(step)
        rules = set(new_hits) | set(held) | (set(taken) if grew else set())
        created: list[int] = []
        for rule in sorted(rules):
            policy = AlertPolicy() if policies is None else policies.get(rule)
            if policy is None:
                if rule not in new_hits:
                    continue  # the rule was removed or disabled: its held hits wait
                policy = AlertPolicy()
            fresh = new_hits.get(rule, [])
            if sources < policy.min_sources:
                self._set_held(fresh, True)
                continue
            done = taken.get(rule, set())
            pending = held.get(rule, []) + fresh
            due = [t for t in policy.follow_up if t <= sources and t not in done]
            newest = self._newest_hit(story_id, rule) if due else 0
            for hit_id, step in story_steps(policy, sources, pending, newest, done):
                if step >= 0:  # a negative step is a threshold passed over: not alerted
                    made = self._add_deliveries(hit_id, step, now, policy)
                    if made is None:
                        continue  # muted (realert window): the story is not alerted yet
                    created += made
                self.db.execute(
                    """INSERT INTO story_alerts (story_id, rule, step, hit_id, created_at)
                       VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [story_id, rule, abs(step), hit_id, seen],
                )
            self._set_held(held.get(rule, []), False)  # decided: alerted or suppressed
        return created

    def _set_held(self, hit_ids: Sequence[int], value: bool) -> None:
        if hit_ids:
            marks = ",".join("?" * len(hit_ids))
            self.db.execute(f"UPDATE hits SET held = ? WHERE id IN ({marks})", [value, *hit_ids])

    def _newest_hit(self, story_id: int, rule: str) -> int:
        row = self.db.execute(
            """SELECT max(h.id) FROM hits h JOIN articles a ON a.id = h.article_id
               WHERE a.story_id = ? AND h.rule = ?""",
            [story_id, rule],
        ).fetchone()
        return int(row[0] or 0)

    def _add_deliveries(
        self, hit_id: int, step: int, now: datetime, policy: AlertPolicy
    ) -> list[int] | None:
        """One pending delivery of a hit's alert (``step``) per channel it routes to;
        None if the hit is inside its rule's realert window (the reason is kept with the
        hit)."""
        seen = stamp(now)
        muted = self._realert(hit_id, policy, now) if step == 0 and policy.realert else None
        if muted is not None:
            self.db.execute("UPDATE hits SET muted = ? WHERE id = ?", [muted, hit_id])
            return None
        (channels,) = self.db.execute("SELECT channels FROM hits WHERE id = ?", [hit_id]).fetchone()
        created = []
        for channel in json.loads(channels):
            key = delivery_key(hit_id, channel, step)
            cursor = self.db.execute(
                """INSERT INTO deliveries (hit_id, channel, step, key, next_attempt_at,
                       created_at, queued_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hit_id, channel, step) DO NOTHING""",
                [hit_id, channel, step, key, seen, seen, seen],
            )
            if cursor.lastrowid and cursor.rowcount:
                created.append(cursor.lastrowid)
        return created

    def _realert(self, hit_id: int, policy: AlertPolicy, now: datetime) -> str | None:
        """Why the hit is inside its rule's realert window (None: alert it), remembering
        the alert and the window it opens otherwise."""
        column = _REALERT_VALUES.get(policy.realert_key, "h.rule")
        rule, value = self.db.execute(
            f"""SELECT h.rule, {column} FROM hits h JOIN articles a ON a.id = h.article_id
                WHERE h.id = ?""",
            [hit_id],
        ).fetchone()
        value = str(value if value is not None else "")
        row = self.db.execute(
            "SELECT last_at, window FROM realerts WHERE rule = ? AND value = ?", [rule, value]
        ).fetchone()
        last = unstamp(row[0]) if row else None
        alert, window = realert(policy, last, float(row[1]) if row else 0.0, now)
        if not alert:
            return (
                f"realert: {policy.realert_key} {value} was alerted at {row[0]} "
                f"(window {window:.0f}s)"
            )
        self.db.execute(
            """INSERT INTO realerts (rule, value, last_at, window) VALUES (?, ?, ?, ?)
               ON CONFLICT (rule, value) DO UPDATE SET last_at = excluded.last_at,
                   window = excluded.window""",
            [rule, value, stamp(now), window],
        )
        return None

    def _storm(self, delivery_ids: list[int], cap: int, seen: str) -> list[int]:
        """Fold the alerts of every channel that got more than ``cap`` of them from one
        poll into one summary delivery; return the deliveries left to send."""
        marks = ",".join("?" * len(delivery_ids))
        by_channel: dict[str, list[int]] = {}
        for delivery_id, channel in self.db.execute(
            f"SELECT id, channel FROM deliveries WHERE id IN ({marks}) ORDER BY id",
            delivery_ids,
        ):
            by_channel.setdefault(channel, []).append(delivery_id)
        kept: list[int] = []
        for channel, ids in by_channel.items():
            if len(ids) <= cap:
                kept += ids
                continue
            feeds = sorted(
                {
                    row[0]
                    for row in self.db.execute(
                        f"""SELECT DISTINCT a.feed FROM deliveries d
                            JOIN hits h ON h.id = d.hit_id JOIN articles a ON a.id = h.article_id
                            WHERE d.id IN ({",".join("?" * len(ids))})""",
                        ids,
                    )
                }
            )
            for start in range(0, len(ids), DIGEST_ITEMS):  # every alert listed in one
                chunk = ids[start : start + DIGEST_ITEMS]
                kept.append(self._make_digest(channel, "storm", ", ".join(feeds), chunk, seen))
        return kept

    def _make_digest(
        self, channel: str, reason: str, label: str, delivery_ids: Sequence[int], seen: str
    ) -> int:
        """One digest of ``delivery_ids`` (now batched into it) and its pending delivery."""
        cursor = self.db.execute(
            """INSERT INTO digests (channel, reason, label, total, created_at)
               VALUES (?, ?, ?, ?, ?)""",
            [channel, reason, label, len(delivery_ids), seen],
        )
        digest_id = int(cursor.lastrowid or 0)
        for start in range(0, len(delivery_ids), 500):
            chunk = delivery_ids[start : start + 500]
            self.db.execute(
                f"""UPDATE deliveries SET status = 'batched', in_digest = ?, release_at = NULL
                    WHERE id IN ({",".join("?" * len(chunk))})""",
                [digest_id, *chunk],
            )
        cursor = self.db.execute(
            """INSERT INTO deliveries (digest_id, channel, key, next_attempt_at, created_at,
                   queued_at) VALUES (?, ?, ?, ?, ?, ?)""",
            [digest_id, channel, f"digest-{digest_id}-{channel}", seen, seen, seen],
        )
        return int(cursor.lastrowid or 0)
