"""Silences: time-boxed mutes of a rule, a feed or a story."""

from __future__ import annotations

from datetime import datetime

from monitor.store.base import StoreBase, record_of
from monitor.store.interface import SilenceRow
from monitor.text import stamp


class SilencesMixin(StoreBase):
    def add_silence(
        self, kind: str, target: str, until: datetime, now: datetime, reason: str = ""
    ) -> int:
        with self._atomic():
            cursor = self.db.execute(
                """INSERT INTO silences (kind, target, until, reason, created_at)
                   VALUES (?, ?, ?, ?, ?)""",
                [kind, target, stamp(until), reason, stamp(now)],
            )
        return int(cursor.lastrowid or 0)

    def silences(self, now: datetime, *, everything: bool = False) -> list[SilenceRow]:
        """Active silences (``everything``: expired and lifted ones too), newest first."""
        where = "" if everything else "WHERE lifted_at IS NULL AND until > ?"
        return [
            record_of(SilenceRow, row)
            for row in self.db.query(
                f"""SELECT id, kind, target, until, reason, created_at, lifted_at,
                           lifted_at IS NULL AND until > ? AS active
                    FROM silences {where} ORDER BY id DESC""",
                [stamp(now)] if everything else [stamp(now), stamp(now)],
            )
        ]

    def lift_silence(self, silence_id: int, now: datetime) -> bool:
        with self._atomic():
            cursor = self.db.execute(
                "UPDATE silences SET lifted_at = ? WHERE id = ? AND lifted_at IS NULL",
                [stamp(now), silence_id],
            )
        return bool(cursor.rowcount)

    def mute_silenced(self, now: datetime) -> int:
        """Mark pending and deferred deliveries of silenced rules, feeds and stories as
        muted (their hits stay stored); return how many."""
        active = self.db.execute(
            "SELECT id, kind, target FROM silences WHERE lifted_at IS NULL AND until > ?",
            [stamp(now)],
        ).fetchall()
        if not active:
            return 0
        column = {"rule": "h.rule", "feed": "a.feed", "story": "CAST(a.story_id AS TEXT)"}
        muted = 0
        with self._atomic():
            for silence_id, kind, target in active:
                reason = f"silenced: {kind} {target} (silence #{silence_id})"
                ids = [
                    r[0]
                    for r in self.db.execute(
                        # From the waiting rows (few), not from every hit of the rule.
                        f"""SELECT d.id FROM deliveries d JOIN hits h ON h.id = d.hit_id
                            JOIN articles a ON a.id = h.article_id
                            WHERE d.status IN ('pending', 'deferred') AND +{column[kind]} = ?""",
                        [target],
                    )
                ]
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    self.db.execute(
                        f"""UPDATE deliveries SET status = 'muted', last_error = ?
                            WHERE id IN ({marks})""",
                        [reason, *chunk],
                    )
                    self.db.execute(
                        f"""UPDATE hits SET muted = ? WHERE id IN
                            (SELECT hit_id FROM deliveries WHERE id IN ({marks}))""",
                        [reason, *chunk],
                    )
                muted += len(ids)
        return muted
