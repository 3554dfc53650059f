"""The outbox: due deliveries, their outcomes, digests and retries."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from monitor.models import Digest, PendingDelivery
from monitor.policy import DIGEST_ITEMS
from monitor.store.alerts import AlertsMixin
from monitor.text import stamp, stamped, unstamp


class OutboxMixin(AlertsMixin):
    def due_deliveries(
        self,
        now: datetime,
        limit: int = 100,
        *,
        channels: Collection[str] | None = None,
        exclude: Collection[str] = (),
        after: int = 0,
    ) -> list[PendingDelivery | Digest]:
        """Pending deliveries whose next attempt is due, oldest first (ids above
        ``after``); only for ``channels`` if given, never for ``exclude``."""
        where = "d.status = 'pending' AND d.next_attempt_at <= ? AND d.id > ?"
        args: list[Any] = [stamp(now), after]
        if channels is not None:
            where += f" AND d.channel IN ({','.join('?' * len(channels))})"
            args += list(channels)
        if exclude:
            where += f" AND d.channel NOT IN ({','.join('?' * len(exclude))})"
            args += list(exclude)
        rows = self.db.execute(
            f"""SELECT d.id, d.digest_id, d.channel, d.attempts, d.key, g.reason, g.label,
                       g.created_at, g.total
                FROM deliveries d LEFT JOIN digests g ON g.id = d.digest_id
                WHERE {where} ORDER BY d.id LIMIT ?""",
            [*args, limit],
        ).fetchall()
        single = [row[0] for row in rows if row[1] is None]
        marks = ",".join("?" * len(single))
        found = self._alerts(f"d.id IN ({marks})", single, limit=len(single)) if single else []
        alerts = {a.id: a for a in found}
        out: list[PendingDelivery | Digest] = []
        for row in rows:
            if row[1] is None:
                out.append(alerts[row[0]])
                continue
            items = self._alerts(
                "d.in_digest = ? AND d.channel = ?", [row[1], row[2]], limit=DIGEST_ITEMS
            )
            out.append(
                Digest(
                    id=row[0],
                    channel=row[2],
                    attempts=row[3],
                    reason=row[5],
                    label=row[6],
                    created_at=stamped(row[7]),
                    items=tuple(i for i in items if isinstance(i, PendingDelivery)),
                    total=row[8],
                    key=row[4],
                )
            )
        return out

    def _alerts(self, where: str, args: Sequence[Any], limit: int = 1000) -> list[PendingDelivery]:
        """The hit and notice deliveries matching ``where``, ready to render."""
        rows = self.db.execute(
            f"""SELECT d.id, d.channel, d.attempts,
                      coalesce(h.rule, 'notice:' || n.kind), coalesce(h.severity, 'normal'),
                      coalesce(h.terms, '[]'), coalesce(h.snippet, ''),
                      coalesce(a.feed, n.subject), coalesce(a.title, n.title),
                      coalesce(a.link, ''), a.published, coalesce(a.seen_at, n.created_at),
                      coalesce(n.body, ''), d.step, a.story_id, coalesce(st.sources, 0),
                      (SELECT group_concat(source) FROM (SELECT DISTINCT source FROM articles
                           WHERE story_id = a.story_id ORDER BY id)), d.key
               FROM deliveries d
               LEFT JOIN hits h ON h.id = d.hit_id
               LEFT JOIN articles a ON a.id = h.article_id
               LEFT JOIN stories st ON st.id = a.story_id
               LEFT JOIN notices n ON n.id = d.notice_id
               WHERE d.digest_id IS NULL AND {where}
               ORDER BY d.id LIMIT ?""",
            [*args, limit],
        ).fetchall()
        return [
            PendingDelivery(
                id=r[0],
                channel=r[1],
                attempts=r[2],
                rule=r[3],
                severity=r[4],
                terms=tuple(json.loads(r[5])),
                snippet=r[6],
                feed=r[7],
                title=r[8],
                link=r[9],
                published=unstamp(r[10]),
                seen_at=stamped(r[11]),
                notice=r[12],
                step=r[13],
                story_id=r[14],
                sources=r[15],
                outlets=tuple(r[16].split(",")) if r[16] else (),
                key=r[17],
            )
            for r in rows
        ]

    def add_notice(
        self,
        kind: str,
        subject: str,
        title: str,
        body: str,
        channels: Sequence[str],
        now: datetime,
    ) -> int:
        """Store a system notice and one pending delivery per channel, in one transaction."""
        seen = stamp(now)
        with self._atomic():
            cursor = self.db.execute(
                """INSERT INTO notices (kind, subject, title, body, created_at)
                   VALUES (?, ?, ?, ?, ?)""",
                [kind, subject, title, body, seen],
            )
            notice_id = int(cursor.lastrowid or 0)
            for channel in channels:
                self.db.execute(
                    """INSERT INTO deliveries (notice_id, channel, key, next_attempt_at,
                           created_at, queued_at) VALUES (?, ?, ?, ?, ?, ?)""",
                    [notice_id, channel, f"notice-{notice_id}-{channel}", seen, seen, seen],
                )
        return notice_id

    def mark_sent(self, delivery_id: int, now: datetime) -> None:
        """Record a delivery as sent; StorageBusy if the database stays locked."""
        with self._atomic():
            self.db.execute(
                """UPDATE deliveries SET status = 'sent', sent_at = ?, last_error = NULL,
                       attempts = attempts + 1 WHERE id = ?""",
                [stamp(now), delivery_id],
            )

    def mark_failed(
        self,
        delivery_id: int,
        error: str,
        retry_at: datetime,
        *,
        now: datetime | None = None,
        max_age: float | None = None,
    ) -> bool:
        """Record a failed attempt and when to try again. A delivery queued more than
        ``max_age`` seconds before ``now`` is given up instead: marked dead (True)."""
        dead = False
        with self._atomic():
            if now is not None and max_age is not None:
                row = self.db.execute(
                    "SELECT queued_at FROM deliveries WHERE id = ?", [delivery_id]
                ).fetchone()
                queued = unstamp(row[0]) if row else None
                dead = queued is not None and (now - queued).total_seconds() >= max_age
            self.db.execute(
                """UPDATE deliveries SET attempts = attempts + 1, last_error = ?,
                   next_attempt_at = ?, status = CASE WHEN ? THEN 'dead' ELSE status END
                   WHERE id = ?""",
                [error, stamp(retry_at), dead, delivery_id],
            )
        return dead

    def defer(self, delivery_id: int, batch: str, release_at: datetime) -> None:
        """Hold a pending delivery back for the digest ``batch`` of its channel, which goes
        out at ``release_at`` (the earliest release time of its members wins)."""
        with self._atomic():
            self.db.execute(
                """UPDATE deliveries SET status = 'deferred', batch = ?, release_at = ?
                   WHERE id = ? AND status = 'pending'""",
                [batch, stamp(release_at), delivery_id],
            )

    def release_batches(self, now: datetime, channels: Collection[str] | None = None) -> int:
        """Turn every deferred batch whose release time has come into one digest with a
        pending delivery; return how many digests were made."""
        where, args = "", []
        if channels is not None:
            where = f" AND channel IN ({','.join('?' * len(channels))})"
            args = list(channels)
        made = 0
        due_batches = f"""SELECT channel, batch FROM deliveries WHERE status = 'deferred'{where}
                          GROUP BY channel, batch HAVING min(release_at) <= ?"""
        args.append(stamp(now))
        if not self.db.execute(due_batches, args).fetchone():
            return 0  # nothing due: no write transaction (this runs every delivery round)
        with self._atomic():
            for channel, batch in self.db.execute(due_batches, args).fetchall():
                ids = [
                    r[0]
                    for r in self.db.execute(
                        """SELECT id FROM deliveries WHERE status = 'deferred' AND channel = ?
                           AND batch = ? ORDER BY id""",
                        [channel, batch],
                    )
                ]
                reason, _, label = batch.partition(":")
                for start in range(0, len(ids), DIGEST_ITEMS):
                    self._make_digest(
                        channel, reason, label, ids[start : start + DIGEST_ITEMS], stamp(now)
                    )
                    made += 1
        return made

    def postpone(self, delivery_id: int, until: datetime) -> None:
        """Try a pending delivery no sooner than ``until`` (a digest during quiet hours)."""
        with self._atomic():
            self.db.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
                [stamp(until), delivery_id],
            )

    def retry(self, ids: Sequence[int], now: datetime, *, dead: bool = False) -> int:
        """Queue deliveries again (``ids``, or with ``dead`` every dead one): due now, their
        max age counted afresh. Sent deliveries are sent again only when named."""
        seen = stamp(now)
        with self._atomic():
            if dead:
                cursor = self.db.execute(
                    """UPDATE deliveries SET status = 'pending', next_attempt_at = ?,
                       queued_at = ? WHERE status = 'dead'""",
                    [seen, seen],
                )
                return int(cursor.rowcount)
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            cursor = self.db.execute(
                f"""UPDATE deliveries SET status = 'pending', next_attempt_at = ?, queued_at = ?
                    WHERE id IN ({marks}) AND status IN ('pending', 'dead', 'sent', 'muted')""",
                [seen, seen, *ids],
            )
            return int(cursor.rowcount)
