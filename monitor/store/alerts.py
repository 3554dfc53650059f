"""Story alerts: hits held, alerted, followed up or muted, and the deliveries they make."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from monitor.models import AlertPolicy
from monitor.policy import StoryState, realert_verdict, storm, story_decisions
from monitor.store.base import StoreBase
from monitor.text import stamp

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
    """Reads a story's alert state, asks monitor.policy, and writes what it decided."""

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
        """Create the deliveries the story's hits now call for (monitor.policy decides);
        return their ids. Costs the same however many copies the story has.
        ``started``: the story is the article's own, just made (one source, nothing held
        or alerted on it yet: nothing to look up)."""
        state = self._story_state(story_id, new_hits, started, policies)
        created: list[int] = []
        for decision in story_decisions(state, new_hits, grew, policies, baseline):
            self._set_held(decision.hold, True)
            for step in decision.steps:
                if step.send:
                    made = self._add_deliveries(step.hit, step.step, now, decision.policy)
                    if made is None:
                        continue  # muted (realert window): the story is not alerted yet
                    created += made
                self.db.execute(
                    """INSERT INTO story_alerts (story_id, rule, step, hit_id, created_at)
                       VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [story_id, decision.rule, step.step, step.hit, stamp(now)],
                )
            self._set_held(decision.release, False)
        return created

    def _story_state(
        self,
        story_id: int,
        new_hits: Mapping[str, list[int]],
        started: bool,
        policies: Mapping[str, AlertPolicy] | None,
    ) -> StoryState:
        """The story's sources, held hits and steps taken, by rule; and the newest hit of
        each rule, when a rule of the story has follow-ups."""
        if started:  # the new hits are all it has
            return StoryState(1, {}, {}, {rule: max(ids) for rule, ids in new_hits.items() if ids})
        (sources,) = self.db.execute(
            "SELECT sources FROM stories WHERE id = ?", [story_id]
        ).fetchone()
        held: dict[str, list[int]] = {}
        for hit_id, rule in self.db.execute(
            """SELECT h.id, h.rule FROM hits h JOIN articles a ON a.id = h.article_id
               WHERE h.held = 1 AND a.story_id = ? ORDER BY h.id""",
            [story_id],
        ):
            held.setdefault(rule, []).append(hit_id)
        taken: dict[str, set[int]] = {}
        for rule, step in self.db.execute(
            "SELECT rule, step FROM story_alerts WHERE story_id = ?", [story_id]
        ):
            taken.setdefault(rule, set()).add(step)
        rules = set(new_hits) | set(held) | set(taken)
        # The policy story_decisions will use for each rule (a rule not loaded: none).
        follows = [AlertPolicy() if policies is None else policies.get(rule) for rule in rules]
        newest: dict[str, int] = {}
        if any(policy is not None and policy.follow_up for policy in follows):
            newest = dict(
                self.db.execute(
                    """SELECT h.rule, max(h.id) FROM hits h JOIN articles a ON a.id = h.article_id
                       WHERE a.story_id = ? GROUP BY h.rule""",
                    [story_id],
                ).fetchall()
            )
        return StoryState(sources, held, taken, newest)

    def _set_held(self, hit_ids: Sequence[int], value: bool) -> None:
        if hit_ids:
            marks = ",".join("?" * len(hit_ids))
            self.db.execute(f"UPDATE hits SET held = ? WHERE id IN ({marks})", [value, *hit_ids])

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
        """Why the hit is inside its rule's realert window (None: alert it, and the
        window it opens is remembered)."""
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
        verdict = realert_verdict(
            policy, value, row[0] if row else None, float(row[1]) if row else 0.0, now
        )
        if verdict.muted is None:
            self.db.execute(
                """INSERT INTO realerts (rule, value, last_at, window) VALUES (?, ?, ?, ?)
                   ON CONFLICT (rule, value) DO UPDATE SET last_at = excluded.last_at,
                       window = excluded.window""",
                [rule, value, stamp(now), verdict.window],
            )
        return verdict.muted

    def _storm(self, delivery_ids: list[int], cap: int, seen: str) -> list[int]:
        """Fold the alerts of every channel that got more than ``cap`` of them from one
        poll into summary digests (monitor.policy.storm); return the deliveries left to
        send."""
        marks = ",".join("?" * len(delivery_ids))
        by_channel: dict[str, list[int]] = {}
        for delivery_id, channel in self.db.execute(
            f"SELECT id, channel FROM deliveries WHERE id IN ({marks}) ORDER BY id",
            delivery_ids,
        ):
            by_channel.setdefault(channel, []).append(delivery_id)
        kept, folds = storm(by_channel, cap)
        for fold in folds:
            ids = [i for chunk in fold.chunks for i in chunk]
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
            for chunk in fold.chunks:
                kept.append(self._make_digest(fold.channel, "storm", ", ".join(feeds), chunk, seen))
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
