"""Feeds' HTTP state: validators, error streaks, stops, notice flags."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from monitor.models import FeedState
from monitor.store.base import StoreBase, _database_error, record_of
from monitor.text import mask_url, stamp


class FeedsMixin(StoreBase):
    def feed_state(self, name: str) -> FeedState:
        """The stored state of one feed (only its name for a feed never polled)."""
        rows = list(self.db.query("SELECT * FROM feeds WHERE name = ?", [name]))
        return record_of(FeedState, rows[0]) if rows else FeedState(name)

    def record_fetch(
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        outcome: str,
        error: str | None = None,
        error_kind: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        next_poll: datetime | None = None,
        retry_after_until: datetime | None = None,
        moved_to: str | None = None,
        disabled: str | None = None,
        found_new: bool = False,
        ttl: int | None = None,
    ) -> None:
        """Remember the outcome of one poll and, on success, the validators to send next
        and the feed's RSS ``ttl`` (minutes; a 304 passes on the stored one).

        URLs are stored masked: credentials in feed URLs never reach the database file.
        """
        ok = error is None
        with self._atomic():
            self.db.execute(
                """
                INSERT INTO feeds (name, url, last_fetch, last_outcome) VALUES (?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    moved_to = CASE WHEN feeds.url = excluded.url THEN feeds.moved_to END,
                    url = excluded.url, last_fetch = excluded.last_fetch,
                    last_outcome = excluded.last_outcome
                """,
                [name, mask_url(url), stamp(now), outcome],
            )
            self.db.execute(
                """UPDATE feeds SET next_poll = ?, retry_after_until = ?,
                   moved_to = coalesce(?, moved_to), disabled = ? WHERE name = ?""",
                [
                    stamp(next_poll) if next_poll else None,
                    stamp(retry_after_until) if retry_after_until else None,
                    mask_url(moved_to) if moved_to else None,
                    disabled,
                    name,
                ],
            )
            if ok:
                self.db.execute(
                    """UPDATE feeds SET last_success = ?, consecutive_errors = 0,
                       last_error = NULL, last_error_kind = NULL,
                       etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),
                       last_new = CASE WHEN ? THEN ? ELSE coalesce(last_new, ?) END,
                       ttl = ? WHERE name = ?""",
                    [
                        stamp(now),
                        etag,
                        last_modified,
                        found_new,
                        stamp(now),
                        stamp(now),
                        ttl,
                        name,
                    ],
                )
            else:
                self.db.execute(
                    """UPDATE feeds SET consecutive_errors = consecutive_errors + 1,
                       last_error = ?, last_error_kind = ? WHERE name = ?""",
                    [error, error_kind, name],
                )

    def resume_feed(self, name: str) -> str | None:
        """Clear the stop of feed ``name`` (410 Gone) so that it is polled again, as new
        as a feed whose error streak just ended: it keeps its validators, stories and
        articles. Returns why it had stopped, or None if it had not."""
        try:
            with self._atomic():
                row = self.db.execute(
                    "SELECT disabled FROM feeds WHERE name = ?", [name]
                ).fetchone()
                if row is None or row[0] is None:
                    return None
                self.db.execute(
                    """UPDATE feeds SET disabled = NULL, next_poll = NULL,
                       consecutive_errors = 0 WHERE name = ?""",
                    [name],
                )
                return str(row[0])
        except sqlite3.Error as exc:
            raise _database_error(self.path, f"resume feed {name!r}", exc) from exc

    def set_feed_flags(self, name: str, **flags: int) -> None:
        """Set the notice flags (failing_alerted, quiet_alerted) of a feed."""
        allowed = {"failing_alerted", "quiet_alerted"}
        if not flags or set(flags) - allowed:
            raise ValueError(f"flags must be among {sorted(allowed)}")
        assignments = ", ".join(f"{k} = ?" for k in flags)
        with self._atomic():
            self.db.execute(
                f"UPDATE feeds SET {assignments} WHERE name = ?", [*flags.values(), name]
            )

    def feeds(self) -> list[FeedState]:
        """Every feed ever polled, by name."""
        return [
            record_of(FeedState, row) for row in self.db.query("SELECT * FROM feeds ORDER BY name")
        ]

    def broken_feeds(self, failures: int) -> set[str]:
        """Feeds that failed at least ``failures`` times in a row, or stopped (410)."""
        return {
            row[0]
            for row in self.db.execute(
                "SELECT name FROM feeds WHERE consecutive_errors >= ? OR disabled IS NOT NULL",
                [failures],
            )
        }
