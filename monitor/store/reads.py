"""The read side: hits, stories, deliveries and statistics for the CLI and pages."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta

from monitor.store.base import StoreBase, _filters, one_value, record_of
from monitor.store.interface import (
    DeliveryRow,
    HitRow,
    RuleCount,
    Stats,
    StoryArticle,
    StoryRow,
)
from monitor.text import stamp


class ReadsMixin(StoreBase):
    def hits(
        self,
        *,
        limit: int | None = 20,
        rule: str | None = None,
        feed: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[HitRow]:
        """Most recent hits first (of ``rule``, of ``feed``, created in [since, until)),
        with their article, feed, story and delivery states; ``limit`` None: all."""
        clauses, args = _filters(
            ("h.rule = ?", rule),
            ("a.feed = ?", feed),
            ("h.created_at >= ?", stamp(since) if since else None),
            ("h.created_at < ?", stamp(until) if until else None),
        )
        rows = self.db.query(
            f"""SELECT h.id, h.rule, h.rule_version, h.severity, h.terms, h.snippet,
                       h.created_at, h.held, h.muted, a.feed, a.title, a.link, a.published,
                       a.story_id,
                       (SELECT sources FROM stories WHERE id = a.story_id) AS story_sources,
                       (SELECT group_concat(d.channel || ':' || d.status, ' ')
                          FROM deliveries d WHERE d.hit_id = h.id) AS deliveries
                FROM hits h JOIN articles a ON a.id = h.article_id
                {clauses} ORDER BY h.created_at DESC, h.id DESC LIMIT ?""",
            [*args, -1 if limit is None else limit],
        )
        return [record_of(HitRow, {**row, "terms": json.loads(row["terms"])}) for row in rows]

    def stories(
        self, *, limit: int = 20, min_sources: int = 1, story_id: int | None = None
    ) -> list[StoryRow]:
        """Most recently active stories first, with their distinct sources; with
        ``story_id``, that story alone, with its articles and hits."""
        where, args = "WHERE s.sources >= ?", [min_sources]
        if story_id is not None:
            where, args = "WHERE s.id = ?", [story_id]
        rows = list(
            self.db.query(
                f"""SELECT s.id, s.title, s.first_seen, s.last_seen, s.articles, s.sources,
                           (SELECT min(id) FROM articles WHERE story_id = s.id)
                               AS first_article_id,
                           (SELECT group_concat(source, ' ') FROM (SELECT DISTINCT source
                               FROM articles WHERE story_id = s.id ORDER BY id)) AS outlets,
                           (SELECT count(*) FROM hits h JOIN articles a ON a.id = h.article_id
                               WHERE a.story_id = s.id) AS hits
                    FROM stories s {where} ORDER BY s.last_seen DESC, s.id DESC LIMIT ?""",
                [*args, limit],
            )
        )
        articles: tuple[StoryArticle, ...] = ()
        if story_id is not None and rows:
            articles = tuple(
                record_of(StoryArticle, row)
                for row in self.db.query(
                    """SELECT a.id, a.feed, a.source, a.title, a.link, a.seen_at,
                              (SELECT group_concat(h.rule, ' ') FROM hits h
                                 WHERE h.article_id = a.id) AS rules
                       FROM articles a WHERE a.story_id = ? ORDER BY a.id""",
                    [story_id],
                )
            )
        return [
            record_of(
                StoryRow,
                {**row, "outlets": (row["outlets"] or "").split(), "articles_list": articles},
            )
            for row in rows
        ]

    def stats(self, now: datetime, feeds: Collection[str] | None = None) -> Stats:
        """What the database holds, for `news-monitor stats`; the feed counts among
        ``feeds`` if given (the configured, enabled ones)."""

        day = stamp(now - timedelta(days=1))
        deliveries = self.delivery_counts()
        rules = tuple(
            RuleCount(rule, hits, recent)
            for rule, hits, recent in self.db.execute(
                """SELECT rule, count(*), sum(created_at >= ?) FROM hits
                   GROUP BY rule ORDER BY count(*) DESC""",
                [day],
            )
        )
        size = self.path.stat().st_size if self.path.exists() else 0
        wal = self.path.with_name(self.path.name + "-wal")
        (oldest,) = self.db.execute("SELECT min(seen_at) FROM articles").fetchone()
        return record_of(
            Stats,
            {
                "database": str(self.path),
                "size_bytes": size + (wal.stat().st_size if wal.exists() else 0),
                "articles": one_value(self.db, "SELECT count(*) FROM articles"),
                "articles_last_day": one_value(
                    self.db, "SELECT count(*) FROM articles WHERE seen_at >= ?", day
                ),
                "oldest_article": oldest,
                "stories": one_value(self.db, "SELECT count(*) FROM stories"),
                "articles_without_story": self.pending_stories(),
                "hits": one_value(self.db, "SELECT count(*) FROM hits"),
                "hits_last_day": one_value(
                    self.db, "SELECT count(*) FROM hits WHERE created_at >= ?", day
                ),
                "muted_hits": one_value(
                    self.db, "SELECT count(*) FROM hits WHERE muted IS NOT NULL"
                ),
                "rules": rules,
                "deliveries": deliveries,
                **self._feed_counts(feeds),
                "silences_active": one_value(
                    self.db,
                    "SELECT count(*) FROM silences WHERE lifted_at IS NULL AND until > ?",
                    stamp(now),
                ),
            },
        )

    def _feed_counts(self, feeds: Collection[str] | None) -> dict[str, int]:
        """Feeds polled, failing (an error last time) and stopped (410), among ``feeds``
        (the configured, enabled ones; None: every feed ever polled)."""
        counts = {"feeds_polled": 0, "feeds_failing": 0, "feeds_stopped": 0}
        for name, errors, stopped in self.db.execute(
            "SELECT name, consecutive_errors, disabled FROM feeds"
        ):
            if feeds is None or name in feeds:
                counts["feeds_polled"] += 1
                counts["feeds_failing"] += bool(errors) and not stopped
                counts["feeds_stopped"] += stopped is not None
        return counts

    def counts(self) -> dict[str, int]:
        """Row counts for a quick health view."""

        return {
            "articles": one_value(self.db, "SELECT count(*) FROM articles"),
            "hits": one_value(self.db, "SELECT count(*) FROM hits"),
            "pending": one_value(
                self.db, "SELECT count(*) FROM deliveries WHERE status = 'pending'"
            ),
            "sent": one_value(self.db, "SELECT count(*) FROM deliveries WHERE status = 'sent'"),
        }

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status (pending, deferred, sent, dead, muted, batched)."""
        return {
            status: int(count)
            for status, count in self.db.execute(
                "SELECT status, count(*) FROM deliveries GROUP BY status"
            )
        }

    def deliveries(
        self, *, status: str | None = None, channel: str | None = None, limit: int = 50
    ) -> list[DeliveryRow]:
        """Newest deliveries first, with what they carry, for `news-monitor deliveries`."""
        clause, args = _filters(
            ("d.status = ?", status or None), ("d.channel = ?", channel or None)
        )
        return [
            record_of(DeliveryRow, row)
            for row in self.db.query(
                f"""SELECT d.id, d.key, d.channel, d.status, d.attempts, d.next_attempt_at,
                           d.last_error, d.created_at, d.sent_at, d.batch, d.release_at,
                           d.in_digest, d.step,
                           CASE WHEN d.hit_id IS NOT NULL THEN 'alert'
                                WHEN d.notice_id IS NOT NULL THEN 'notice'
                                ELSE 'digest' END AS kind,
                           coalesce(h.rule, 'notice:' || n.kind, 'digest:' || g.reason) AS what,
                           coalesce(a.title, n.title,
                                    g.total || ' alerts (' || g.label || ')') AS title
                    FROM deliveries d
                    LEFT JOIN hits h ON h.id = d.hit_id
                    LEFT JOIN articles a ON a.id = h.article_id
                    LEFT JOIN notices n ON n.id = d.notice_id
                    LEFT JOIN digests g ON g.id = d.digest_id
                    {clause} ORDER BY d.id DESC LIMIT ?""",
                [*args, limit],
            )
        ]

    def pending_stories(self) -> int:
        """Articles stored without a story yet (see :meth:`cluster_pending`)."""
        return one_value(
            self.db,
            "SELECT count(*) FROM story_pending p JOIN articles a ON a.id = p.article_id",
        )
