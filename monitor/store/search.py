"""Full-text search (FTS5) and the index's catching up, in short transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime

from monitor.errors import StorageError
from monitor.store.base import StoreBase, _database_error, _filters, one_value, record_of
from monitor.store.interface import SearchRow
from monitor.text import stamp

#: Articles added to the search index per transaction (about 0.25 ms each).
INDEX_BATCH = 200


class SearchMixin(StoreBase):
    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        feed: str | None = None,
        since: datetime | None = None,
        mark: tuple[str, str] = ("[", "]"),
    ) -> list[SearchRow]:
        """Stored articles matching the full-text ``query`` (FTS5: words, "phrases",
        AND / OR / NOT, prefix*, title: scopes), best first (BM25, the title weighing
        most), with the matched words wrapped in ``mark`` in the title and a snippet."""
        clauses, args = _filters(
            ("a.feed = ?", feed), ("a.seen_at >= ?", stamp(since) if since else None)
        )
        try:
            return [
                record_of(SearchRow, row)
                for row in self.db.query(
                    f"""SELECT a.id, a.feed, a.link, a.published, a.seen_at, a.story_id,
                               highlight(articles_fts, 0, ?, ?) AS title,
                               snippet(articles_fts, -1, ?, ?, '…', 24) AS snippet,
                               bm25(articles_fts, 5.0, 2.0, 1.0) AS rank,
                               (SELECT group_concat(h.rule, ' ') FROM hits h
                                  WHERE h.article_id = a.id) AS rules
                        FROM articles_fts JOIN articles a ON a.id = articles_fts.rowid
                        WHERE articles_fts MATCH ? {clauses.replace("WHERE", "AND", 1)}
                        ORDER BY rank LIMIT ?""",
                    [*mark, *mark, query, *args, limit],
                )
            ]
        except sqlite3.OperationalError as exc:
            raise StorageError(
                f'cannot search for {query!r}: {exc}; write words, "exact phrases", '
                "AND, OR, NOT, prefix* or title:word"
            ) from exc

    def index_search(self, batch: int = INDEX_BATCH) -> int:
        """Add up to ``batch`` articles not yet in the search index, oldest first, in one
        short transaction; return how many (fewer than ``batch``: it is up to date)."""
        try:
            with self._atomic():
                start = self.indexed_up_to()
                row = self.db.execute(
                    "SELECT max(id), count(*) FROM (SELECT id FROM articles WHERE id > ? "
                    "ORDER BY id LIMIT ?)",
                    [start, batch],
                ).fetchone()
                if not row[1]:
                    return 0
                self.db.execute(
                    """INSERT INTO articles_fts (rowid, title, summary, content)
                       SELECT id, title, summary, content FROM articles
                       WHERE id > ? AND id <= ?""",
                    [start, row[0]],
                )
                self.db.execute("UPDATE fts_state SET indexed = ?", [row[0]])
                return int(row[1])
        except sqlite3.Error as exc:
            raise _database_error(self.path, "update the search index", exc) from exc

    def catch_up_search(self, stop: Callable[[], bool] = lambda: False) -> int:
        """:meth:`index_search` until the index is up to date (or ``stop()``), one short
        transaction per batch; return how many articles were added."""
        added = 0
        while not stop():
            batch = self.index_search()
            added += batch
            if batch < INDEX_BATCH:
                break
        return added

    def indexed_up_to(self) -> int:
        """The highest article id in the search index: every later one is not yet."""
        return one_value(self.db, "SELECT indexed FROM fts_state")

    def unindexed(self) -> int:
        """How many articles the search index does not have yet."""
        return one_value(
            self.db, "SELECT count(*) FROM articles WHERE id > ?", self.indexed_up_to()
        )
