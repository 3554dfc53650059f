"""Saving a poll: articles, their hits and the deliveries they call for, in one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from monitor.models import AlertPolicy, Article, Hit, Rule
from monitor.store.alerts import AlertsMixin
from monitor.store.base import _database_error, one_value
from monitor.store.stories import StoryIndexMixin
from monitor.stories import (
    CLUSTER_BATCH,
    DEFAULT_QUIET,
    Sketch,
    Vocabulary,
    fingerprint_of,
    keys_of,
    pack,
    sketch,
    unpack,
)
from monitor.text import stamp, unstamp

#: Why the hits of a feed's first poll were not alerted (baseline).
BASELINE_MUTED = "baseline: the feed's first poll"


def _body(article: Article) -> str:
    """The article's plain text besides its title (what its sketch is made of)."""
    return "\n".join(p for p in (article.summary, article.content) if p)


class ArticlesMixin(StoryIndexMixin, AlertsMixin):
    def recent_uids(self, feed: str, limit: int) -> frozenset[str]:
        """The uids of the ``limit`` articles of ``feed`` stored last."""
        return frozenset(
            row[0]
            for row in self.db.execute(
                "SELECT uid FROM articles WHERE feed = ? ORDER BY seen_at DESC LIMIT ?",
                [feed, limit],
            )
        )

    def unseen(self, feed: str, articles: Sequence[Article]) -> list[Article]:
        """The articles of ``feed`` not stored yet (first occurrence kept within a poll)."""
        if not articles:
            return []
        known: set[str] = set()
        uids = [a.uid for a in articles]
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(
                row[0]
                for row in self.db.execute(
                    f"""SELECT uid FROM articles WHERE feed = ? AND uid IN ({marks})
                        UNION ALL
                        SELECT uid FROM pruned_uids WHERE feed = ? AND uid IN ({marks})""",
                    [feed, *chunk, feed, *chunk],
                )
            )
        out = []
        for article in articles:
            if article.uid not in known:
                known.add(article.uid)
                out.append(article)
        return out

    def save(
        self,
        matched: Iterable[tuple[Article, Sequence[Hit]]],
        now: datetime,
        *,
        policies: Mapping[str, AlertPolicy] | None = None,
        quiet: timedelta = DEFAULT_QUIET,
        vocabulary: Vocabulary | None = None,
        baseline: bool = False,
        storm: int = 0,
        cluster_later: bool = False,
    ) -> list[int]:
        """Store articles, their hits and pending deliveries in one transaction; return
        the ids of the deliveries created.

        Each article joins the open story (one with an article in the last ``quiet``) of
        its most similar recent article, or starts one (``vocabulary``: word rarity of
        recent articles, see monitor.stories). Deliveries follow the rules' policies
        (``policies``: every loaded rule by name, and the hits of a rule not in it stay
        held; None: the default policy for every rule): story, realert window.
        ``baseline``: the feed's first poll, whose backlog is stored without alerts.
        ``storm``: more than this many alerts for one channel become one summary (0: no
        cap). ``cluster_later`` (with ``baseline``): the articles are stored without a
        story, for :meth:`cluster_pending` to place (a backlog alerts nothing of its own,
        and clustering is most of the cost of storing it)."""
        seen = stamp(now)
        cutoff = stamp(now - quiet)
        delivery_ids: list[int] = []
        later = cluster_later and baseline
        try:
            with self._atomic():
                for article, hits in matched:
                    stored = (
                        self._pend_story(article, seen)
                        if later
                        else self._join_story(article, seen, cutoff, vocabulary)
                    )
                    if stored is None:
                        continue  # stored by an earlier poll: never matched or alerted twice
                    article_id, story_id, grew, started = stored
                    new_hits: dict[str, list[int]] = {}
                    for hit in hits:
                        cursor = self.db.execute(
                            """INSERT INTO hits (article_id, rule, rule_version, severity,
                                   terms, snippet, channels, created_at, muted)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                               ON CONFLICT (article_id, rule) DO NOTHING""",
                            [
                                article_id,
                                hit.rule,
                                hit.rule_version,
                                hit.severity,
                                json.dumps(list(hit.terms), ensure_ascii=False),
                                hit.snippet,
                                json.dumps(list(hit.channels), ensure_ascii=False),
                                seen,
                                BASELINE_MUTED if baseline else None,
                            ],
                        )
                        if cursor.rowcount and cursor.lastrowid:
                            new_hits.setdefault(hit.rule, []).append(cursor.lastrowid)
                    if (new_hits or grew) and not later:
                        delivery_ids += self._story_alerts(
                            story_id, new_hits, grew, policies, now, baseline, started
                        )
                if storm and len(delivery_ids) > storm:
                    delivery_ids = self._storm(delivery_ids, storm, seen)
        except sqlite3.Error as exc:
            raise _database_error(self.path, "store articles", exc) from exc
        return delivery_ids

    def _insert_article(
        self, article: Article, seen: str, story_id: int | None, source: str
    ) -> int | None:
        cursor = self.db.execute(
            """INSERT INTO articles (feed, uid, title, link, summary, content, author,
                   categories, published, content_hash, seen_at, source, story_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (feed, uid) DO NOTHING""",
            [
                article.feed,
                article.uid,
                article.title,
                article.link,
                article.summary,
                article.content,
                article.author,
                json.dumps(list(article.categories), ensure_ascii=False),
                stamp(article.published) if article.published else None,
                article.content_hash,
                seen,
                source,
                story_id,
            ],
        )
        return cursor.lastrowid if cursor.rowcount else None

    def _join_story(
        self,
        article: Article,
        seen: str,
        cutoff: str,
        vocabulary: Vocabulary | None,
    ) -> tuple[int, int, bool, bool] | None:
        """Store an article in its story (an open one it is a copy of, or a new one):
        (article id, story id, whether the story gained a source, whether the article
        started it); None if the article was stored already."""
        new = sketch(article.title, _body(article), vocabulary, prints=article.fingerprint)
        story_id, source, created, grew, postings = self._choose_story(
            new, article.title, article.link, article.feed, seen, cutoff, vocabulary
        )
        article_id = self._insert_article(article, seen, story_id, source)
        if article_id is None:  # stored by an earlier poll: nothing changes
            if created:
                self.db.execute("DELETE FROM stories WHERE id = ?", [story_id])
            return None
        self._place(article_id, story_id, seen, new, postings, grew, created)
        return article_id, story_id, grew, created

    def _pend_story(self, article: Article, seen: str) -> tuple[int, int, bool, bool] | None:
        """Store an article with no story yet, for :meth:`cluster_pending`: (article id,
        0, False, False); None if it was stored already."""
        article_id = self._insert_article(article, seen, None, "")
        if article_id is None:
            return None
        prints = fingerprint_of(article.title, _body(article), article.fingerprint)
        self.db.execute(
            "INSERT INTO story_pending (article_id, words, numbers) VALUES (?, ?, ?)",
            [article_id, pack(prints[0]), pack(prints[1])],
        )
        return article_id, 0, False, False

    def cluster_pending(
        self,
        now: datetime,
        *,
        limit: int = CLUSTER_BATCH,
        upto: int | None = None,
        policies: Mapping[str, AlertPolicy] | None = None,
        quiet: timedelta = DEFAULT_QUIET,
        vocabulary: Vocabulary | None = None,
        storm: int = 0,
    ) -> tuple[int, list[int]]:
        """Put up to ``limit`` of the articles stored without a story (``save`` with
        ``cluster_later``) into their stories, oldest first, in one transaction. Each is
        compared with the stories open when it was seen, as ``save`` would have done
        then, and counts as a baseline article: its own hits stay muted, but hits held
        on a story it brings a new source to may now be alerted (``policies``,
        ``storm``: as for ``save``; the deliveries are made at ``now``). Returns (the
        articles placed, the ids of the deliveries created). ``upto``: only articles up
        to this id."""
        delivery_ids: list[int] = []
        if self.db.execute("SELECT 1 FROM story_pending LIMIT 1").fetchone() is None:
            return 0, []  # the usual case: no transaction needed
        try:
            with self._atomic():
                rows = self.db.execute(
                    """SELECT p.article_id, p.words, p.numbers, a.feed, a.title, a.link,
                              a.seen_at
                       FROM story_pending p JOIN articles a ON a.id = p.article_id
                       WHERE p.article_id <= ? ORDER BY p.article_id LIMIT ?""",
                    [(1 << 62) if upto is None else upto, limit],
                ).fetchall()
                for article_id, words, numbers, feed, title, link, seen in rows:
                    found = frozenset(unpack(words))
                    new = Sketch(found, frozenset(unpack(numbers)), keys_of(found, vocabulary))
                    when = unstamp(seen)
                    cutoff = stamp(when - quiet) if when else seen
                    story_id, source, started, grew, postings = self._choose_story(
                        new, title, link, feed, seen, cutoff, vocabulary
                    )
                    self.db.execute(
                        "UPDATE articles SET story_id = ?, source = ? WHERE id = ?",
                        [story_id, source, article_id],
                    )
                    self._place(article_id, story_id, seen, new, postings, grew, started)
                    if grew:
                        delivery_ids += self._story_alerts(
                            story_id, {}, grew, policies, now, True, started
                        )
                if rows:
                    self.db.execute(
                        "DELETE FROM story_pending WHERE article_id <= ?", [rows[-1][0]]
                    )
                if storm and len(delivery_ids) > storm:
                    delivery_ids = self._storm(delivery_ids, storm, stamp(now))
        except sqlite3.Error as exc:
            raise _database_error(self.path, "cluster stored articles", exc) from exc
        return len(rows), delivery_ids

    def last_pending(self) -> int:
        """The newest article waiting for its story (0: none)."""
        return one_value(self.db, "SELECT coalesce(max(article_id), 0) FROM story_pending")

    def articles_since(self, since: datetime | None) -> Iterator[tuple[int, Article]]:
        """Stored articles seen since ``since`` (all if None), oldest first."""
        rows = self.db.execute(
            """SELECT id, feed, uid, title, link, summary, content, author, categories,
                      published, content_hash
               FROM articles WHERE seen_at >= ? ORDER BY seen_at, id""",
            [stamp(since) if since else ""],
        )
        for r in rows:
            published = unstamp(r[9])
            yield (
                r[0],
                Article(
                    feed=r[1],
                    uid=r[2],
                    title=r[3],
                    link=r[4],
                    summary=r[5],
                    content=r[6],
                    author=r[7],
                    categories=tuple(json.loads(r[8])),
                    published=published,
                    content_hash=r[10],
                ),
            )

    def recent_texts(self, limit: int = 2000) -> list[str]:
        """Title and summary of the most recent articles (for word-frequency estimates)."""
        return [
            f"{row[0]}\n{row[1]}"
            for row in self.db.execute(
                "SELECT title, summary FROM articles ORDER BY id DESC LIMIT ?", [limit]
            )
        ]

    def record_rules(self, rules: Iterable[Rule], now: datetime) -> None:
        """Remember the ruleset the daemon now runs: exactly these versions are active."""
        with self._atomic():
            self.db.execute("UPDATE rule_versions SET active = 0 WHERE active = 1")
            for rule in rules:
                self.db.execute(
                    """INSERT INTO rule_versions (rule, version, source, first_active, active)
                       VALUES (?, ?, ?, ?, 1)
                       ON CONFLICT (rule, version) DO UPDATE SET active = 1""",
                    [rule.name, rule.version, rule.source, stamp(now)],
                )

    def active_rule_sources(self) -> dict[str, tuple[str, str]]:
        """Rule name -> (version, source) of the versions the daemon last ran."""
        return {
            row[0]: (row[1], row[2])
            for row in self.db.execute(
                "SELECT rule, version, source FROM rule_versions WHERE active = 1"
            )
        }
