"""Retention: pruning old hits and articles in short transactions, and vacuum."""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from monitor.store.base import StoreBase, _database_error, one_value
from monitor.stories import DEFAULT_QUIET
from monitor.text import stamp

#: Rows deleted per retention transaction.
PRUNE_BATCH = 500


class MaintenanceMixin(StoreBase):
    def prune(
        self,
        now: datetime,
        *,
        articles: float,
        hits: float,
        quiet: timedelta = DEFAULT_QUIET,
        dry_run: bool = False,
    ) -> dict[str, int]:
        """Retention, all at once (see :meth:`prune_steps`): what was deleted (or, with
        ``dry_run``, would be)."""
        if dry_run:
            return self._prune_counts(now, articles, hits, quiet)
        counts: Counter[str] = Counter()
        for step in self.prune_steps(now, articles=articles, hits=hits, quiet=quiet):
            counts.update(step)
        return {key: counts[key] for key in ("hits", "articles", "notices", "stories")}

    def prune_steps(
        self,
        now: datetime,
        *,
        articles: float,
        hits: float,
        quiet: timedelta = DEFAULT_QUIET,
        batch: int = PRUNE_BATCH,
    ) -> Iterator[dict[str, int]]:
        """Retention in short transactions of at most ``batch`` rows (the daemon goes on
        between them, and another process is never locked out for long), yielding what
        each deleted.

        Deleted: hits created more than ``hits`` seconds ago, with their deliveries and
        story steps, and articles without hits seen more than ``articles`` seconds ago;
        then notices and digests as old as the hits, expired silences, empty stories.
        Kept whatever their age: hits with a delivery still waiting (pending, deferred)
        or held for more sources, everything of a story still open (``quiet``), and the
        newest hit and article (so ids are never given out twice). A pruned article's
        id within its feed is remembered, so a feed that still lists it does not bring
        it back as new."""
        old_hits, old_articles = self._prune_queries()
        args = self._prune_args(now, articles, hits, quiet)
        try:
            for done in self._prune_batches(old_hits, args[0], batch, self._delete_hits):
                yield {"hits": done}
            forget = functools.partial(self._delete_articles, stamp(now))
            for done in self._prune_batches(old_articles, args[1], batch, forget):
                yield {"articles": done}
            yield self._prune_rest(args[0][0], args[1][1])
        except sqlite3.Error as exc:
            raise _database_error(self.path, "prune", exc) from exc

    def _prune_rest(self, hit_cutoff: str, story_cutoff: str) -> dict[str, int]:
        """What goes with old hits and articles, in one transaction: notices and digests
        as old as the hits (none still waiting to be sent), expired silences and
        realert windows, stories left empty; how many notices and stories went."""
        with self._atomic():
            notices = self.db.execute(
                """DELETE FROM notices WHERE created_at < ? AND NOT EXISTS
                   (SELECT 1 FROM deliveries d WHERE d.notice_id = notices.id
                    AND d.status IN ('pending', 'deferred'))""",
                [hit_cutoff],
            ).rowcount
            self.db.execute(
                """DELETE FROM digests WHERE created_at < ? AND NOT EXISTS
                   (SELECT 1 FROM deliveries d WHERE d.in_digest = digests.id)
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.digest_id = digests.id
                                   AND d.status = 'pending')""",
                [hit_cutoff],
            )
            stories = self.db.execute(
                """DELETE FROM stories WHERE last_seen < ? AND NOT EXISTS
                   (SELECT 1 FROM articles WHERE story_id = stories.id)""",
                [story_cutoff],
            ).rowcount
            self.db.execute("DELETE FROM silences WHERE until < ?", [hit_cutoff])
            self.db.execute("DELETE FROM realerts WHERE last_at < ?", [hit_cutoff])
            # Ids of items pruned long ago: a feed lists an item for weeks, not years.
            self.db.execute("DELETE FROM pruned_uids WHERE pruned_at < ?", [hit_cutoff])
        return {"notices": notices, "stories": stories}

    def _prune_batches(
        self, query: str, args: list[str], batch: int, delete: Callable[[list[int], str], None]
    ) -> Iterator[int]:
        """``delete`` the rows whose ids ``query`` finds, ``batch`` a transaction, until
        none is left; yields how many each transaction deleted."""
        while True:
            with self._atomic():
                ids = [r[0] for r in self.db.execute(f"{query} LIMIT ?", [*args, batch])]
                if ids:
                    delete(ids, ",".join("?" * len(ids)))
            if not ids:
                return
            yield len(ids)

    def _delete_hits(self, ids: list[int], marks: str) -> None:
        self.db.execute(f"DELETE FROM hits WHERE id IN ({marks})", ids)

    def _delete_articles(self, pruned_at: str, ids: list[int], marks: str) -> None:
        """Delete these articles, remembering their ids within their feeds."""
        self.db.execute(
            f"""INSERT OR IGNORE INTO pruned_uids (feed, uid, pruned_at)
                SELECT feed, uid, ? FROM articles WHERE id IN ({marks})""",
            [pruned_at, *ids],
        )
        self.db.execute(f"DELETE FROM story_sketches WHERE article_id IN ({marks})", ids)
        self.db.execute(f"DELETE FROM articles WHERE id IN ({marks})", ids)

    @staticmethod
    def _prune_queries() -> tuple[str, str]:
        """The ids of the hits, then of the articles, that retention deletes."""
        closed = """NOT EXISTS (SELECT 1 FROM stories st WHERE st.id = a.story_id
                                AND st.last_seen >= ?)"""
        old_hits = f"""SELECT h.id FROM hits h JOIN articles a ON a.id = h.article_id
            WHERE h.created_at < ? AND h.held = 0 AND {closed}
            AND h.id < (SELECT max(id) FROM hits)
            AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.hit_id = h.id
                            AND d.status IN ('pending', 'deferred'))"""
        old_articles = f"""SELECT a.id FROM articles a
            WHERE a.seen_at < ? AND {closed} AND a.id < (SELECT max(id) FROM articles)
            AND NOT EXISTS (SELECT 1 FROM hits h WHERE h.article_id = a.id)"""
        return old_hits, old_articles

    @staticmethod
    def _prune_args(
        now: datetime, articles: float, hits: float, quiet: timedelta
    ) -> tuple[list[str], list[str]]:
        story_cutoff = stamp(now - quiet)
        return (
            [stamp(now - timedelta(seconds=hits)), story_cutoff],
            [stamp(now - timedelta(seconds=articles)), story_cutoff],
        )

    def _prune_counts(
        self, now: datetime, articles: float, hits: float, quiet: timedelta
    ) -> dict[str, int]:
        old_hits, old_articles = self._prune_queries()
        hit_args, article_args = self._prune_args(now, articles, hits, quiet)
        doomed_hits = one_value(self.db, f"SELECT count(*) FROM ({old_hits})", *hit_args)
        # Articles whose every hit goes count too (they go once their hits are gone).
        orphaned = f"""SELECT count(*) FROM articles a WHERE a.seen_at < ?
            AND EXISTS (SELECT 1 FROM hits h WHERE h.article_id = a.id)
            AND NOT EXISTS (SELECT 1 FROM hits h WHERE h.article_id = a.id
                            AND h.id NOT IN ({old_hits}))"""
        return {
            "hits": doomed_hits,
            "articles": one_value(self.db, f"SELECT count(*) FROM ({old_articles})", *article_args)
            + one_value(self.db, orphaned, article_args[0], *hit_args),
            "notices": one_value(
                self.db, "SELECT count(*) FROM notices WHERE created_at < ?", hit_args[0]
            ),
        }

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system."""
        try:
            self.db.execute("VACUUM")
        except sqlite3.Error as exc:
            raise _database_error(self.path, "vacuum", exc) from exc
