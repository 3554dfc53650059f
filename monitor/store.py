"""SQLite storage (sqlite-utils): feeds' HTTP state, articles, hits and the delivery outbox.

Every SQL statement of the daemon lives in this module. The daemon owns one writer
connection; CLI commands open their own (WAL lets them read while the daemon writes).

Timestamps are stored as ISO 8601 UTC text (``2026-11-24T07:21:13Z``), which sorts.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import sqlite3
import sys
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from monitor.errors import StorageBusy, StorageError
from monitor.models import AlertPolicy, Article, Digest, Hit, PendingDelivery, Rule
from monitor.policy import realert, story_steps
from monitor.stories import (
    MIN_WORDS,
    Packed,
    Sketch,
    Vocabulary,
    best_story,
    fingerprint_of,
    keys_of,
    outlet,
    pack,
    shared_keys_needed,
    sketch,
    unpack,
)
from monitor.text import mask_url, stamp, unstamp


def _body(article: Article) -> str:
    """The article's plain text besides its title (what its sketch is made of)."""
    return "\n".join(p for p in (article.summary, article.content) if p)


#: Word weights when the caller has no estimate: every word weighs 1.
_NO_VOCABULARY = Vocabulary()
#: How long a story stays open to new articles after its last one (stories.quiet).
DEFAULT_QUIET = timedelta(days=2)
#: Newest entries read under each index key of a new article, and the most stored
#: articles compared with it (those sharing the most keys).
PER_KEY = 200
MAX_CANDIDATES = 20
#: Most recent indexed articles whose keys are rebuilt when the common words change, and
#: how many a transaction.
REKEY_LIMIT = 20_000
REKEY_BATCH = 1000
#: Article ids whose sketches and keys one story-index pruning transaction forgets.
PRUNE_STORY_BATCH = 2000

#: Articles of one story compared with a new one, at most (the newest).
PER_STORY = 3
#: Articles of a baseline backlog put into their stories per transaction
#: (Store.cluster_pending; about 0.8 ms each on a database of 50,000 articles).
CLUSTER_BATCH = 100
#: What "the same" is for a rule's realert window (AlertPolicy.realert_key).
_REALERT_VALUES = {
    "rule": "h.rule",
    "story": "a.story_id",
    "feed": "a.feed",
    "source": "a.source",
    "link": "a.link",
}
#: Pages the write-ahead log may reach (about 40 MB) before a commit copies it back into
#: the database file (SQLite's default is 1,000). A checkpoint waits for the disk twice,
#: with the poll loop stopped; ten times fewer of them, each copying once a page changed
#: many times, cost a third less (the 1,000-feed benchmark's commits: 9.6 s instead of
#: 16.3). The daemon's search indexer also checkpoints after each round, on its thread.
CHECKPOINT_PAGES = 10_000
#: Rows deleted per retention transaction.
PRUNE_BATCH = 500
#: Articles added to the search index per transaction (about 0.25 ms each).
INDEX_BATCH = 200
#: Why the hits of a feed's first poll were not alerted (baseline).
BASELINE_MUTED = "baseline: the feed's first poll"
#: Alerts listed in one digest message (the rest are counted).
DIGEST_ITEMS = 50

#: Words for full-text search: English stems, case and accents folded.
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

migrations = Migrations("news-monitor")


def _rebuild(
    db: sqlite_utils.Database, table: str, create: str, copied: str, select: str = ""
) -> None:
    """Replace ``table`` by the one ``create`` makes (named ``{table}_new``), keeping the
    rows' ``copied`` columns (filled from the ``select`` expressions, if given): how
    SQLite changes constraints."""
    db.execute(create)
    db.execute(f"INSERT INTO {table}_new ({copied}) SELECT {select or copied} FROM {table}")
    db.execute(f"DROP TABLE {table}")
    db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


@migrations(name="0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE feeds (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            etag TEXT,
            last_modified TEXT,
            last_fetch TEXT,
            last_success TEXT,
            last_outcome TEXT,
            consecutive_errors INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )""")
    db.execute("""
        CREATE TABLE articles (
            id INTEGER PRIMARY KEY,
            feed TEXT NOT NULL,
            uid TEXT NOT NULL,
            title TEXT NOT NULL,
            link TEXT NOT NULL,
            summary TEXT NOT NULL,
            content TEXT NOT NULL,
            author TEXT NOT NULL,
            published TEXT,
            content_hash TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            UNIQUE (feed, uid)
        )""")
    db.execute("CREATE INDEX articles_seen_at ON articles (seen_at)")
    db.execute("CREATE INDEX articles_content_hash ON articles (content_hash)")
    db.execute("""
        CREATE TABLE hits (
            id INTEGER PRIMARY KEY,
            article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            rule_version TEXT NOT NULL,
            severity TEXT NOT NULL,
            terms TEXT NOT NULL,
            snippet TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (article_id, rule)
        )""")
    db.execute("CREATE INDEX hits_created_at ON hits (created_at)")
    db.execute("""
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL REFERENCES hits (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (hit_id, channel)
        )""")
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")


@migrations(name="0002_article_categories")
def _categories(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE articles ADD COLUMN categories TEXT NOT NULL DEFAULT '[]'")


@migrations(name="0003_rule_versions")
def _rule_versions(db: sqlite_utils.Database) -> None:
    # Every version of every rule the daemon has run, so `test-rule` can compare an edit
    # with what is live, and a hit's rule_version can be looked up.
    db.execute("""
        CREATE TABLE rule_versions (
            rule TEXT NOT NULL,
            version TEXT NOT NULL,
            source TEXT NOT NULL,
            first_active TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (rule, version)
        )""")


@migrations(name="0004_feed_health")
def _feed_health(db: sqlite_utils.Database) -> None:
    for column in (
        "last_error_kind TEXT",  # timeout, too-large, http, ssrf, parse...
        "next_poll TEXT",  # when the scheduler will poll next
        "retry_after_until TEXT",  # never poll before this (429/503 Retry-After)
        "moved_to TEXT",  # where a permanent redirect (301/308) points
        "disabled TEXT",  # why polling stopped (410 Gone), NULL while polled
        "last_new TEXT",  # the last poll that found new articles
        "failing_alerted INTEGER NOT NULL DEFAULT 0",  # a "feed is failing" notice went out
        "quiet_alerted INTEGER NOT NULL DEFAULT 0",  # a "feed is silent" notice went out
    ):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column}")


@migrations(name="0005_notices")
def _notices(db: sqlite_utils.Database) -> None:
    # System notices (a feed failing, silent, recovered...) go through the same outbox as
    # hits: a delivery belongs to a hit or to a notice.
    db.execute("""
        CREATE TABLE notices (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")
    _rebuild(
        db,
        "deliveries",
        """
        CREATE TABLE deliveries_new (
            id INTEGER PRIMARY KEY,
            hit_id INTEGER REFERENCES hits (id) ON DELETE CASCADE,
            notice_id INTEGER REFERENCES notices (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            CHECK ((hit_id IS NULL) != (notice_id IS NULL)),
            UNIQUE (hit_id, channel),
            UNIQUE (notice_id, channel)
        )""",
        "id, hit_id, channel, status, attempts, next_attempt_at, last_error, created_at, sent_at",
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")


@migrations(name="0006_stories")
def _stories(db: sqlite_utils.Database) -> None:
    # Articles from many outlets that report one event form a story (monitor.stories).
    db.execute("""
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            articles INTEGER NOT NULL DEFAULT 0,
            sources INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("CREATE INDEX stories_last_seen ON stories (last_seen)")
    db.execute("ALTER TABLE articles ADD COLUMN story_id INTEGER REFERENCES stories (id)")
    # Who published it (the link's host, else the feed): distinct sources are counted.
    db.execute("ALTER TABLE articles ADD COLUMN source TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX articles_story ON articles (story_id, source)")
    # What clustering keeps of recent articles, pruned after the story quiet period.
    # story_keys.id is article_id * 32 + band, so pruning is a range delete on the rowid.
    db.execute("""
        CREATE TABLE story_sketches (
            article_id INTEGER PRIMARY KEY,
            story_id INTEGER NOT NULL,
            words BLOB NOT NULL,
            numbers BLOB NOT NULL
        )""")
    db.execute("CREATE TABLE story_keys (id INTEGER PRIMARY KEY, key INTEGER NOT NULL)")
    db.execute("CREATE INDEX story_keys_key ON story_keys (key)")
    # The channels a hit alerts, kept so a hit held back (min_sources) can go out later;
    # held = 1 while it waits for its story to reach the rule's min_sources.
    db.execute("ALTER TABLE hits ADD COLUMN channels TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE hits ADD COLUMN held INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX hits_held ON hits (article_id) WHERE held = 1")
    # Alert steps taken per (story, rule): 0 = the alert, N = the "now N sources" follow-up.
    db.execute("""
        CREATE TABLE story_alerts (
            story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            step INTEGER NOT NULL,
            hit_id INTEGER NOT NULL REFERENCES hits (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            PRIMARY KEY (story_id, rule, step)
        )""")
    # A hit can now have a delivery per step (its alert, then follow-ups).
    _rebuild(
        db,
        "deliveries",
        """
        CREATE TABLE deliveries_new (
            id INTEGER PRIMARY KEY,
            hit_id INTEGER REFERENCES hits (id) ON DELETE CASCADE,
            notice_id INTEGER REFERENCES notices (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            step INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            CHECK ((hit_id IS NULL) != (notice_id IS NULL)),
            UNIQUE (hit_id, channel, step),
            UNIQUE (notice_id, channel)
        )""",
        "id, hit_id, notice_id, channel, status, attempts, next_attempt_at, last_error, "
        "created_at, sent_at",
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")
    db.execute("CREATE INDEX deliveries_hit ON deliveries (hit_id)")


@migrations(name="0007_alert_hygiene")
def _alert_hygiene(db: sqlite_utils.Database) -> None:
    # Several alerts of one channel sent as one message: a scheduled digest, the alerts
    # held during quiet hours, or a storm (too many hits from one poll).
    db.execute("""
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            reason TEXT NOT NULL,
            label TEXT NOT NULL,
            total INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""")
    # A delivery is now of a hit, a notice or a digest, and has an idempotency key.
    # status: pending -> sent | dead (gave up after delivery.max_age) | muted (silenced);
    # or deferred (waiting for its digest's release_at) -> batched (sent in in_digest).
    # queued_at: when it was (re)queued, which max_age counts from.
    _rebuild(
        db,
        "deliveries",
        """
        CREATE TABLE deliveries_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hit_id INTEGER REFERENCES hits (id) ON DELETE CASCADE,
            notice_id INTEGER REFERENCES notices (id) ON DELETE CASCADE,
            digest_id INTEGER REFERENCES digests (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            step INTEGER NOT NULL DEFAULT 0,
            key TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL DEFAULT 'pending',
            batch TEXT,
            release_at TEXT,
            in_digest INTEGER REFERENCES digests (id) ON DELETE SET NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            queued_at TEXT NOT NULL,
            sent_at TEXT,
            CHECK ((hit_id IS NOT NULL) + (notice_id IS NOT NULL) + (digest_id IS NOT NULL) = 1),
            UNIQUE (hit_id, channel, step),
            UNIQUE (notice_id, channel),
            UNIQUE (digest_id, channel)
        )""",
        "id, hit_id, notice_id, channel, step, status, attempts, next_attempt_at, last_error, "
        "created_at, sent_at, key, queued_at",
        select=(
            "id, hit_id, notice_id, channel, step, status, attempts, next_attempt_at, "
            "last_error, created_at, sent_at, "
            "CASE WHEN hit_id IS NULL THEN 'notice-' || notice_id || '-' || channel "
            "WHEN step THEN 'followup-' || hit_id || '-' || step || '-' || channel "
            "ELSE 'hit-' || hit_id || '-' || channel END, created_at"
        ),
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)")
    db.execute("CREATE INDEX deliveries_hit ON deliveries (hit_id)")
    db.execute(
        "CREATE INDEX deliveries_deferred ON deliveries (channel, batch) WHERE status = 'deferred'"
    )
    # Why a hit was stored without an alert (baseline, realert window, silence...).
    db.execute("ALTER TABLE hits ADD COLUMN muted TEXT")
    db.execute("""
        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('rule', 'feed', 'story')),
            target TEXT NOT NULL,
            until TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            lifted_at TEXT
        )""")
    # The last alert per (rule, realert key value) and the window it opened.
    db.execute("""
        CREATE TABLE realerts (
            rule TEXT NOT NULL,
            value TEXT NOT NULL,
            last_at TEXT NOT NULL,
            window REAL NOT NULL,
            PRIMARY KEY (rule, value)
        )""")


@migrations(name="0008_search_and_retention")
def _search_and_retention(db: sqlite_utils.Database) -> None:
    # Full-text search over stored articles (FTS5, stemmed English, accents folded),
    # kept in step with the articles table by triggers.
    db.execute(f"""
        CREATE VIRTUAL TABLE articles_fts USING fts5(
            title, summary, content, content='articles', content_rowid='id',
            tokenize='{FTS_TOKENIZER}'
        )""")
    db.execute("""
        INSERT INTO articles_fts (rowid, title, summary, content)
        SELECT id, title, summary, content FROM articles""")
    db.execute("""
        CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
            INSERT INTO articles_fts (rowid, title, summary, content)
            VALUES (new.id, new.title, new.summary, new.content);
        END""")
    db.execute("""
        CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
            INSERT INTO articles_fts (articles_fts, rowid, title, summary, content)
            VALUES ('delete', old.id, old.title, old.summary, old.content);
        END""")
    db.execute("""
        CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, summary, content
        ON articles BEGIN
            INSERT INTO articles_fts (articles_fts, rowid, title, summary, content)
            VALUES ('delete', old.id, old.title, old.summary, old.content);
            INSERT INTO articles_fts (rowid, title, summary, content)
            VALUES (new.id, new.title, new.summary, new.content);
        END""")
    # What retention removed: a feed that still lists a pruned item must not make it new.
    db.execute("""
        CREATE TABLE pruned_uids (
            feed TEXT NOT NULL,
            uid TEXT NOT NULL,
            pruned_at TEXT NOT NULL,
            PRIMARY KEY (feed, uid)
        ) WITHOUT ROWID""")
    db.execute("CREATE INDEX hits_rule ON hits (rule, created_at)")
    # Deleting a hit or a digest looks up what refers to it (retention).
    db.execute("CREATE INDEX story_alerts_hit ON story_alerts (hit_id)")
    db.execute("CREATE INDEX deliveries_in_digest ON deliveries (in_digest)")
    db.execute("CREATE INDEX articles_feed_seen ON articles (feed, seen_at)")


@migrations(name="0009_search_index_behind")
def _search_index_behind(db: sqlite_utils.Database) -> None:
    # The search index is filled by Store.index_search, off the poll's transaction (FTS5
    # tokenising was most of the cost of storing an article): `fts_state.indexed` is the
    # highest article id indexed, and only those are taken out again when an article is
    # deleted or changed (an FTS5 'delete' of a row that was never added corrupts it).
    # Ids are never given out twice (retention keeps the newest article), so every
    # article above `indexed` is one still to index.
    db.execute("DROP TRIGGER articles_fts_insert")
    db.execute("DROP TRIGGER articles_fts_delete")
    db.execute("DROP TRIGGER articles_fts_update")
    db.execute("""
        CREATE TABLE fts_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            indexed INTEGER NOT NULL
        )""")
    db.execute("INSERT INTO fts_state (id, indexed) SELECT 1, coalesce(max(id), 0) FROM articles")
    db.execute("""
        CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles
        WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
            INSERT INTO articles_fts (articles_fts, rowid, title, summary, content)
            VALUES ('delete', old.id, old.title, old.summary, old.content);
        END""")
    db.execute("""
        CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, summary, content
        ON articles WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
            INSERT INTO articles_fts (articles_fts, rowid, title, summary, content)
            VALUES ('delete', old.id, old.title, old.summary, old.content);
            INSERT INTO articles_fts (rowid, title, summary, content)
            VALUES (new.id, new.title, new.summary, new.content);
        END""")


@migrations(name="0010_story_postings")
def _story_postings(db: sqlite_utils.Database) -> None:
    # Candidate lookup reads one row per index key instead of an index range: the ids of
    # the newest PER_KEY articles under the key, as one blob of sorted 32-bit ids
    # (monitor.stories.pack). story_keys stays, without its index on the key: which keys
    # each article has, for pruning and rekeying.
    db.execute("CREATE TABLE story_postings (key INTEGER PRIMARY KEY, articles BLOB NOT NULL)")
    rows = db.execute("SELECT key, id >> 5 FROM story_keys ORDER BY key, id DESC")
    postings = (
        (key, pack(a for _, a in islice(group, PER_KEY)))
        for key, group in groupby(rows, itemgetter(0))
    )
    while batch := list(islice(postings, 1000)):
        db.conn.executemany("INSERT INTO story_postings (key, articles) VALUES (?, ?)", batch)
    db.execute("DROP INDEX story_keys_key")


@migrations(name="0011_search_index_merges")
def _search_index_merges(db: sqlite_utils.Database) -> None:
    # FTS5 starts merging a level's segments, a little at each write, once it has
    # `automerge` of them (default 4), and merges them all at once, within one write,
    # at `crisismerge` (default 16). Automerge 16 with crisismerge 64: filling the index
    # with 50,000 articles in batches of INDEX_BATCH took 5.8 CPU-s instead of 8.7, and
    # 200,000 took 33.9 instead of 42.2, the longest batch 0.10 s instead of 0.13, and
    # queries were no slower. (Automerge 16 alone met crisismerge: merges all at once,
    # batches of up to 1.9 s at 200,000, holding the lock the poll loop waits for.)
    db.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('automerge', 16)")
    db.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('crisismerge', 64)")


@migrations(name="0012_feed_ttl")
def _feed_ttl(db: sqlite_utils.Database) -> None:
    # The RSS <ttl> (minutes) of the feed's last full response: a 304 has no body, and
    # the hint must hold across conditional polls.
    db.execute("ALTER TABLE feeds ADD COLUMN ttl INTEGER")
    # URLs masked before mask_url took the userinfo up to the last "@": masked again, so
    # that they equal the configured URL masked now (else its state would start afresh).
    rows = db.execute("SELECT name, url, moved_to FROM feeds").fetchall()
    db.conn.executemany(
        "UPDATE feeds SET url = ?, moved_to = ? WHERE name = ?",
        [
            (mask_url(url), mask_url(moved) if moved else moved, name)
            for name, url, moved in rows
            if mask_url(url) != url or (moved and mask_url(moved) != moved)
        ],
    )


@migrations(name="0013_story_pending")
def _story_pending(db: sqlite_utils.Database) -> None:
    # Articles stored without a story yet (a baseline poll's backlog, clustered after the
    # poll: Store.cluster_pending), with the word hashes their sketch is made of.
    db.execute(
        """CREATE TABLE story_pending (
            article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
            words BLOB NOT NULL,
            numbers BLOB NOT NULL
        )"""
    )


@contextlib.contextmanager
def _busy(path: Path) -> Iterator[None]:
    """sqlite3's "database is locked" as StorageBusy, so callers can try again."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StorageBusy(f"{path}: database is locked by another process") from exc
        raise


def delivery_key(hit_id: int, channel: str, step: int = 0) -> str:
    """The idempotency key of a hit's alert (``step`` 0) or follow-up on ``channel``:
    the numbers come before the channel name, so no two keys can be alike."""
    return f"followup-{hit_id}-{step}-{channel}" if step else f"hit-{hit_id}-{channel}"


def _filters(*pairs: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause of the conditions whose value is not None, and their arguments."""
    used = [(clause, value) for clause, value in pairs if value is not None]
    if not used:
        return "", []
    return "WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]


def one_value(db: sqlite_utils.Database, sql: str, *args: Any) -> int:
    return int(db.execute(sql, list(args)).fetchone()[0] or 0)


class Store:
    """The database of one daemon. Not thread-safe: use it from one thread."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not path.exists():
                    raise StorageError(
                        f"{path}: database does not exist yet; run `news-monitor run` first"
                    )
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                if migrations.pending(sqlite_utils.Database(conn)):
                    # Written by an older version and not opened by the daemon since:
                    # bring the schema up to date once (transactional, safe while the
                    # daemon runs), then read.
                    conn.close()
                    Store(path).close()
                    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
            self.db = sqlite_utils.Database(conn)
            if not readonly:
                self.db.enable_wal()
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
                # After a burst the log file is cut back to that size.
                (page,) = conn.execute("PRAGMA page_size").fetchone()
                conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_PAGES * page}")
                self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open database: {exc}") from exc

    @staticmethod
    def upgrade_pending(path: Path) -> bool:
        """Whether the database at ``path`` exists and opening it for writing will bring
        its schema up to date (a migration can take a minute on a large database)."""
        if not path.exists():
            return False
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return bool(migrations.pending(sqlite_utils.Database(conn)))
            finally:
                conn.close()
        except sqlite3.Error:
            return False  # opening it for writing says what is wrong

    def _migrate(self) -> None:
        known = {m.name for m in migrations._migrations}
        unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
        if unknown:
            raise StorageError(
                f"{self.path}: database was written by a newer news-monitor "
                f"(migrations {', '.join(unknown)}); upgrade news-monitor or restore a backup"
            )
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.conn.close()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file as far as readers allow,
        without blocking writers (a passive checkpoint)."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot checkpoint the database: {exc}") from exc

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """A write transaction. BEGIN IMMEDIATE takes the write lock first (waiting up to
        the busy timeout): a transaction that reads before it writes, begun deferred,
        fails at its first write if another connection (the search indexer, a command)
        committed in between, and in WAL mode no timeout helps with that. Nested: a
        savepoint, as sqlite-utils makes one."""
        conn = self.db.conn
        if conn.in_transaction or self.readonly:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            self.db.rollback()
            raise

    # --- feeds ----------------------------------------------------------------------------

    def feed_state(self, name: str) -> dict[str, Any]:
        """The stored state of one feed (empty values for a feed never polled)."""
        row = self.db.execute("SELECT * FROM feeds WHERE name = ?", [name]).fetchone()
        if row is None:
            return {
                "url": None,
                "etag": None,
                "last_modified": None,
                "consecutive_errors": 0,
                "retry_after_until": None,
                "moved_to": None,
                "disabled": None,
                "last_success": None,
                "last_new": None,
                "failing_alerted": 0,
                "quiet_alerted": 0,
                "next_poll": None,
                "ttl": None,
            }
        columns = [d[0] for d in self.db.execute("SELECT * FROM feeds LIMIT 0").description]
        return dict(zip(columns, row, strict=True))

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
            with _busy(self.path), self._atomic():
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
        except sqlite3.Error as exc:  # StorageBusy (locked) passes: worth trying again
            raise StorageError(f"{self.path}: cannot resume feed {name!r}: {exc}") from exc

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

    def feeds(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM feeds ORDER BY name"))

    # --- articles and hits ----------------------------------------------------------------

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
            raise StorageError(f"{self.path}: cannot store articles: {exc}") from exc
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

    def _story_of(
        self, new: Sketch, cutoff: str, vocabulary: Vocabulary | None
    ) -> tuple[int | None, dict[int, bytes] | None]:
        """The open story an article of this sketch belongs to (None: a new one), and the
        postings of its keys if they were read (for :meth:`_index_keys`)."""
        if not new.keys or len(new.words) < MIN_WORDS:
            return None, None  # nothing to look it up by: a story of its own
        # Stored articles sharing enough index keys with it (shared_keys_needed), ranked
        # by how many they share. Only the newest entries of each key are kept: a key
        # that thousands of articles have (a common word) costs no more than a rare one,
        # and cannot crowd out the one old article that shares ten keys.
        found, postings = self._candidates(new.keys, shared_keys_needed(new))
        if not found:
            return None, postings
        # An article sharing a third as many keys as the closest one is not closer.
        floor = found[0][0] // 3
        ranked = [article for count, article in found if count >= floor]
        marks = ",".join("?" * len(ranked))
        rows = {
            r[0]: r[1:]
            for r in self.db.execute(
                f"""SELECT s.article_id, s.story_id, s.words, s.numbers
                    FROM story_sketches s JOIN stories st ON st.id = s.story_id
                    WHERE s.article_id IN ({marks}) AND st.last_seen >= ?""",
                [*ranked, cutoff],
            )
        }
        # The closest few articles of each story are enough to compare with: a story of
        # hundreds of copies costs no more than one of three.
        per_story: Counter[int] = Counter()
        candidates: list[tuple[int, Packed]] = []
        for candidate in ranked:
            if candidate in rows:
                story, words, numbers = rows[candidate]
                per_story[story] += 1
                if per_story[story] <= PER_STORY:
                    candidates.append((story, Packed(unpack(words), unpack(numbers))))
        return best_story(new, candidates, vocabulary or _NO_VOCABULARY), postings

    def _candidates(
        self, keys: Collection[int], needed: int
    ) -> tuple[list[tuple[int, int]], dict[int, bytes]]:
        """(keys shared, article id) of the stored articles under at least ``needed`` of
        ``keys`` (among the newest PER_KEY of each), most shared first and newest first
        among equals, at most MAX_CANDIDATES; and the postings read."""
        postings = self._postings(keys)
        shared: Counter[int] = Counter()
        for blob in postings.values():
            shared.update(unpack(blob))
        found = heapq.nlargest(
            MAX_CANDIDATES,
            ((count, article) for article, count in shared.items() if count >= needed),
        )
        return found, postings

    def _postings(self, keys: Collection[int]) -> dict[int, bytes]:
        """key -> the ids of the newest (at most PER_KEY) articles under it, packed."""
        marks = ",".join("?" * len(keys))
        return dict(
            self.db.execute(
                f"SELECT key, articles FROM story_postings WHERE key IN ({marks})", list(keys)
            ).fetchall()
        )

    def _write_postings(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Store these (key, packed article ids) posting rows."""
        self.db.conn.executemany(
            """INSERT INTO story_postings (key, articles) VALUES (?, ?)
               ON CONFLICT (key) DO UPDATE SET articles = excluded.articles""",
            rows,
        )

    def _mend_postings(
        self, keys: Sequence[int], mend: Callable[[int, array[int]], Sequence[int] | None]
    ) -> None:
        """Rewrite the postings of ``keys``, 500 at a time: ``mend(key, ids)`` gets a key's
        article ids (sorted; none if it has no row) and returns its new ones (sorted; the
        newest PER_KEY are kept, and a key left with none is deleted), or None to leave
        it as it is."""
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            postings = self._postings(chunk)
            mended = {key: mend(key, unpack(postings.get(key, b""))) for key in chunk}
            changed = {key: ids for key, ids in mended.items() if ids is not None}
            self._write_postings((key, pack(ids[-PER_KEY:])) for key, ids in changed.items() if ids)
            self.db.conn.executemany(
                "DELETE FROM story_postings WHERE key = ?",
                [(key,) for key, ids in changed.items() if not ids],
            )

    def _record_keys(self, article_id: int, keys: Sequence[int]) -> None:
        """An article's index keys in ``story_keys``: ``id`` is article_id * 32 + band."""
        self.db.conn.executemany(
            "INSERT INTO story_keys (id, key) VALUES (?, ?)",
            [(article_id * 32 + band, key) for band, key in enumerate(keys)],
        )

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

    def _choose_story(
        self,
        new: Sketch,
        title: str,
        link: str,
        feed: str,
        seen: str,
        cutoff: str,
        vocabulary: Vocabulary | None,
    ) -> tuple[int, str, bool, bool, dict[int, bytes] | None]:
        """The story of an article with this sketch, seen at ``seen``: the open one it
        belongs to, or a new one made for it. (story id, the article's source, whether
        the story is new, whether it gains a source, the postings read)."""
        story_id, postings = self._story_of(new, cutoff, vocabulary)
        source = outlet(link, feed)
        if story_id is None:
            return self._new_story(title, seen), source, True, False, postings
        return story_id, source, False, self._new_source(story_id, source), postings

    def _place(
        self,
        article_id: int,
        story_id: int,
        seen: str,
        new: Sketch,
        postings: Mapping[int, bytes] | None,
        grew: bool,
        started: bool,
    ) -> None:
        """The stored article counted in its story (unless it started it) and indexed."""
        if not started:
            self._grow_story(story_id, seen, grew)
        self._index_sketch(article_id, story_id, new, postings)

    def _new_story(self, title: str, seen: str) -> int:
        cursor = self.db.execute(
            """INSERT INTO stories (title, first_seen, last_seen, articles, sources)
               VALUES (?, ?, ?, 1, 1)""",
            [title, seen, seen],
        )
        return int(cursor.lastrowid or 0)

    def _new_source(self, story_id: int, source: str) -> bool:
        """Whether no article of the story is from ``source`` yet."""
        return (
            self.db.execute(
                "SELECT 1 FROM articles WHERE story_id = ? AND source = ? LIMIT 1",
                [story_id, source],
            ).fetchone()
            is None
        )

    def _grow_story(self, story_id: int, seen: str, grew: bool) -> None:
        """One more article in the story (seen at ``seen``, earlier than its last one if
        it waited for its story; ``grew``: from a new source)."""
        self.db.execute(
            """UPDATE stories SET first_seen = min(first_seen, ?), last_seen = max(last_seen, ?),
               articles = articles + 1, sources = sources + ? WHERE id = ?""",
            [seen, seen, int(grew), story_id],
        )

    def _index_sketch(
        self,
        article_id: int,
        story_id: int,
        new: Sketch,
        postings: Mapping[int, bytes] | None,
    ) -> None:
        """Keep the article's sketch, and index it under its keys, for later articles."""
        if new.keys:
            self.db.execute(
                "INSERT INTO story_sketches (article_id, story_id, words, numbers) "
                "VALUES (?, ?, ?, ?)",
                [article_id, story_id, pack(new.words), pack(new.numbers)],
            )
            self._index_keys(article_id, new.keys, postings)

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
            raise StorageError(f"{self.path}: cannot cluster stored articles: {exc}") from exc
        return len(rows), delivery_ids

    def last_pending(self) -> int:
        """The newest article waiting for its story (0: none)."""
        return one_value(self.db, "SELECT coalesce(max(article_id), 0) FROM story_pending")

    def pending_stories(self) -> int:
        """Articles stored without a story yet (see :meth:`cluster_pending`)."""
        return one_value(
            self.db,
            "SELECT count(*) FROM story_pending p JOIN articles a ON a.id = p.article_id",
        )

    def _index_keys(
        self, article_id: int, keys: Sequence[int], postings: Mapping[int, bytes] | None = None
    ) -> None:
        """Index a new article (the newest one stored) under its keys: ``story_keys``
        (``id`` is article_id * 32 + band) and each key's postings (``postings``: as
        :meth:`_postings` read them in this transaction, if it did)."""
        if not keys:
            return
        self._record_keys(article_id, keys)
        if postings is None:
            postings = self._postings(keys)
        # Appended: ids only grow (retention keeps the newest article), so each blob stays
        # sorted, oldest first. The 4 bytes an id takes (pack) are what the slice keeps
        # PER_KEY - 1 of. Should an id ever come out lower, it is merged in its place.
        entry = pack((article_id,))
        keep = 4 * (PER_KEY - 1)
        rows = []
        for key in keys:
            blob = postings.get(key, b"")
            if blob and int.from_bytes(blob[-4:], sys.byteorder) >= article_id:
                rows.append((key, pack(sorted({*unpack(blob), article_id})[-PER_KEY:])))
            else:
                rows.append((key, blob[-keep:] + entry if keep else entry))
        self._write_postings(rows)

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

    def rekey_stories(
        self, vocabulary: Vocabulary, limit: int = REKEY_LIMIT, batch: int = REKEY_BATCH
    ) -> int:
        """Rebuild the index keys of the ``limit`` newest indexed articles under the
        vocabulary's common words (called when they changed a lot: a new database's
        first estimates, and each start's), newest first, ``batch`` articles a
        transaction. Returns how many articles' keys changed."""
        changed = done = 0
        below = 1 << 62
        try:
            while done < limit:
                with self._atomic():
                    rows = self.db.execute(
                        """SELECT article_id, words FROM story_sketches WHERE article_id < ?
                           ORDER BY article_id DESC LIMIT ?""",
                        [below, min(batch, limit - done)],
                    ).fetchall()
                    if not rows:
                        break
                    changed += self._rekey(rows, vocabulary)
                done += len(rows)
                below = rows[-1][0]
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot rebuild the story index: {exc}") from exc
        return changed

    def _rekey(self, rows: Sequence[tuple[int, bytes]], vocabulary: Vocabulary) -> int:
        """New keys for these (article id, words) rows, newest first; their postings
        mended. Returns how many articles' keys changed."""
        before: dict[int, list[int]] = defaultdict(list)
        for entry, key in self.db.execute(
            "SELECT id, key FROM story_keys WHERE id >= ? AND id < ? ORDER BY id",
            [rows[-1][0] * 32, (rows[0][0] + 1) * 32],
        ):
            before[entry >> 5].append(key)
        gone: dict[int, set[int]] = defaultdict(set)  # key -> articles leaving it
        added: dict[int, set[int]] = defaultdict(set)  # key -> articles joining it
        changed = 0
        for article_id, words in rows:
            keys = keys_of(unpack(words), vocabulary)
            old = before.get(article_id, [])
            if tuple(old) == keys:
                continue  # a start's first estimate: mostly the same common words
            changed += 1
            for key in old:
                gone[key].add(article_id)
            for key in keys:
                added[key].add(article_id)
            self.db.execute(
                "DELETE FROM story_keys WHERE id >= ? AND id < ?",
                [article_id * 32, article_id * 32 + 32],
            )
            self._record_keys(article_id, keys)

        def mend(key: int, ids: array[int]) -> list[int]:
            leaving = gone.get(key, set())
            return sorted({a for a in ids if a not in leaving} | added.get(key, set()))

        self._mend_postings(sorted(gone.keys() | added.keys()), mend)
        return changed

    def prune_story_index(self, before: datetime) -> int:
        """:meth:`prune_story_index_steps` all at once; the articles forgotten."""
        return sum(self.prune_story_index_steps(before))

    def prune_story_index_steps(
        self, before: datetime, batch: int = PRUNE_STORY_BATCH
    ) -> Iterator[int]:
        """Forget the sketches and index keys of articles seen before ``before`` (the
        story quiet period): new articles are compared with recent ones only. Oldest
        first, ``batch`` article ids a transaction, each taking its articles out of the
        postings of their keys; yields the sketches each step forgot (the caller may do
        other work between steps; a step not taken is taken next time)."""
        try:
            row = self.db.execute(
                "SELECT min(id) FROM articles WHERE seen_at >= ?", [stamp(before)]
            ).fetchone()
            first_kept = row[0] if row[0] is not None else 1 << 40
            while True:
                with self._atomic():
                    low = self.db.execute(
                        """SELECT min(low) FROM (
                               SELECT min(id) >> 5 AS low FROM story_keys WHERE id < ?
                               UNION ALL
                               SELECT min(article_id) FROM story_sketches
                               WHERE article_id < ?)""",
                        [first_kept * 32, first_kept],
                    ).fetchone()[0]
                    if low is None:
                        return
                    high = min(low + batch, first_kept)
                    keys = [
                        r[0]
                        for r in self.db.execute(
                            "SELECT DISTINCT key FROM story_keys WHERE id >= ? AND id < ?",
                            [low * 32, high * 32],
                        )
                    ]

                    def forget(_: int, ids: array[int], high: int = high) -> array[int] | None:
                        # Sorted, oldest first: ids below `high` are a prefix (and all
                        # of them are forgotten: those below `low` already were).
                        cut = bisect_left(ids, high)
                        return ids[cut:] if cut else None

                    self._mend_postings(keys, forget)
                    self.db.execute(
                        "DELETE FROM story_keys WHERE id >= ? AND id < ?", [low * 32, high * 32]
                    )
                    forgotten = self.db.execute(
                        "DELETE FROM story_sketches WHERE article_id >= ? AND article_id < ?",
                        [low, high],
                    ).rowcount
                yield int(forgotten)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot prune the story index: {exc}") from exc

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

    def recent_story_words(self, limit: int = 2000) -> Iterator[Collection[int]]:
        """The content words (hashes, as stored in its sketch) of the newest article of
        each of the ``limit`` most recently active stories among the last ``25 x limit``
        sketched articles (word rarity for story clustering; bounded so a large database
        costs the same, and read from the stored sketches rather than the text, which
        would have to be split and folded again), one at a time."""
        return (
            unpack(row[0])
            for row in self.db.execute(
                """SELECT words FROM story_sketches WHERE article_id IN
                       (SELECT max(article_id) FROM story_sketches
                        WHERE article_id >
                              (SELECT coalesce(max(article_id), 0) FROM story_sketches) - ?
                        GROUP BY story_id ORDER BY max(article_id) DESC LIMIT ?)""",
                [limit * 25, limit],
            )
        )

    def article_seen(self, article_id: int) -> str:
        row = self.db.execute("SELECT seen_at FROM articles WHERE id = ?", [article_id]).fetchone()
        return str(row[0]) if row else ""

    def hits(
        self,
        *,
        limit: int | None = 20,
        rule: str | None = None,
        feed: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
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
        out = []
        for row in rows:
            row["terms"] = json.loads(row["terms"])
            out.append(row)
        return out

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        feed: str | None = None,
        since: datetime | None = None,
        mark: tuple[str, str] = ("[", "]"),
    ) -> list[dict[str, Any]]:
        """Stored articles matching the full-text ``query`` (FTS5: words, "phrases",
        AND / OR / NOT, prefix*, title: scopes), best first (BM25, the title weighing
        most), with the matched words wrapped in ``mark`` in the title and a snippet."""
        clauses, args = _filters(
            ("a.feed = ?", feed), ("a.seen_at >= ?", stamp(since) if since else None)
        )
        try:
            return list(
                self.db.query(
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
            )
        except sqlite3.OperationalError as exc:
            raise StorageError(
                f'cannot search for {query!r}: {exc}; write words, "exact phrases", '
                "AND, OR, NOT, prefix* or title:word"
            ) from exc

    def index_search(self, batch: int = INDEX_BATCH) -> int:
        """Add up to ``batch`` articles not yet in the search index, oldest first, in one
        short transaction; return how many (fewer than ``batch``: it is up to date)."""
        try:
            with _busy(self.path), self._atomic():
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
        except sqlite3.Error as exc:  # StorageBusy (locked) passes: worth trying again
            raise StorageError(f"{self.path}: cannot update the search index: {exc}") from exc

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

    def stats(self, now: datetime, feeds: Collection[str] | None = None) -> dict[str, Any]:
        """What the database holds, for `news-monitor stats`; the feed counts among
        ``feeds`` if given (the configured, enabled ones)."""

        day = stamp(now - timedelta(days=1))
        deliveries = self.delivery_counts()
        rules = [
            {"rule": rule, "hits": hits, "last_day": recent}
            for rule, hits, recent in self.db.execute(
                """SELECT rule, count(*), sum(created_at >= ?) FROM hits
                   GROUP BY rule ORDER BY count(*) DESC""",
                [day],
            )
        ]
        size = self.path.stat().st_size if self.path.exists() else 0
        wal = self.path.with_name(self.path.name + "-wal")
        return {
            "database": str(self.path),
            "size_bytes": size + (wal.stat().st_size if wal.exists() else 0),
            "articles": one_value(self.db, "SELECT count(*) FROM articles"),
            "articles_last_day": one_value(
                self.db, "SELECT count(*) FROM articles WHERE seen_at >= ?", day
            ),
            "oldest_article": self.db.execute("SELECT min(seen_at) FROM articles").fetchone()[0],
            "stories": one_value(self.db, "SELECT count(*) FROM stories"),
            "articles_without_story": self.pending_stories(),
            "hits": one_value(self.db, "SELECT count(*) FROM hits"),
            "hits_last_day": one_value(
                self.db, "SELECT count(*) FROM hits WHERE created_at >= ?", day
            ),
            "muted_hits": one_value(self.db, "SELECT count(*) FROM hits WHERE muted IS NOT NULL"),
            "rules": rules,
            "deliveries": deliveries,
            **self._feed_counts(feeds),
            "silences_active": one_value(
                self.db,
                "SELECT count(*) FROM silences WHERE lifted_at IS NULL AND until > ?",
                stamp(now),
            ),
        }

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
            while True:
                with self._atomic():
                    ids = [r[0] for r in self.db.execute(f"{old_hits} LIMIT ?", [*args[0], batch])]
                    marks = ",".join("?" * len(ids))
                    if ids:
                        self.db.execute(f"DELETE FROM hits WHERE id IN ({marks})", ids)
                if not ids:
                    break
                yield {"hits": len(ids)}
            while True:
                with self._atomic():
                    ids = [
                        r[0] for r in self.db.execute(f"{old_articles} LIMIT ?", [*args[1], batch])
                    ]
                    marks = ",".join("?" * len(ids))
                    if ids:
                        self.db.execute(
                            f"""INSERT OR IGNORE INTO pruned_uids (feed, uid, pruned_at)
                                SELECT feed, uid, ? FROM articles WHERE id IN ({marks})""",
                            [stamp(now), *ids],
                        )
                        self.db.execute(
                            f"DELETE FROM story_sketches WHERE article_id IN ({marks})", ids
                        )
                        self.db.execute(f"DELETE FROM articles WHERE id IN ({marks})", ids)
                if not ids:
                    break
                yield {"articles": len(ids)}
            hit_cutoff = args[0][0]
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
                    [args[1][1]],
                ).rowcount
                self.db.execute("DELETE FROM silences WHERE until < ?", [hit_cutoff])
                self.db.execute("DELETE FROM realerts WHERE last_at < ?", [hit_cutoff])
                # Ids of items pruned long ago: a feed lists an item for weeks, not years.
                self.db.execute("DELETE FROM pruned_uids WHERE pruned_at < ?", [hit_cutoff])
            yield {"notices": notices, "stories": stories}
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot prune: {exc}") from exc

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

    def stories(
        self, *, limit: int = 20, min_sources: int = 1, story_id: int | None = None
    ) -> list[dict[str, Any]]:
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
        for row in rows:
            row["outlets"] = (row["outlets"] or "").split()
            if story_id is not None:
                row["articles_list"] = list(
                    self.db.query(
                        """SELECT a.id, a.feed, a.source, a.title, a.link, a.seen_at,
                                  (SELECT group_concat(h.rule, ' ') FROM hits h
                                     WHERE h.article_id = a.id) AS rules
                           FROM articles a WHERE a.story_id = ? ORDER BY a.id""",
                        [story_id],
                    )
                )
        return rows

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status (pending, deferred, sent, dead, muted, batched)."""
        return {
            status: int(count)
            for status, count in self.db.execute(
                "SELECT status, count(*) FROM deliveries GROUP BY status"
            )
        }

    def broken_feeds(self, failures: int) -> set[str]:
        """Feeds that failed at least ``failures`` times in a row, or stopped (410)."""
        return {
            row[0]
            for row in self.db.execute(
                "SELECT name FROM feeds WHERE consecutive_errors >= ? OR disabled IS NOT NULL",
                [failures],
            )
        }

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

    # --- outbox -----------------------------------------------------------------------------

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
                    created_at=row[7],
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
                published=r[10],
                seen_at=r[11],
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
        with _busy(self.path), self._atomic():
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
        with _busy(self.path), self._atomic():
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

    def deliveries(
        self, *, status: str | None = None, channel: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Newest deliveries first, with what they carry, for `news-monitor deliveries`."""
        clause, args = _filters(
            ("d.status = ?", status or None), ("d.channel = ?", channel or None)
        )
        return list(
            self.db.query(
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

    # --- silences ---------------------------------------------------------------------------

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

    def silences(self, now: datetime, *, everything: bool = False) -> list[dict[str, Any]]:
        """Active silences (``everything``: expired and lifted ones too), newest first."""
        where = "" if everything else "WHERE lifted_at IS NULL AND until > ?"
        rows = list(
            self.db.query(
                f"""SELECT id, kind, target, until, reason, created_at, lifted_at
                    FROM silences {where} ORDER BY id DESC""",
                [] if everything else [stamp(now)],
            )
        )
        for row in rows:
            row["active"] = row["lifted_at"] is None and row["until"] > stamp(now)
        return rows

    def lift_silence(self, silence_id: int, now: datetime) -> bool:
        with self._atomic():
            cursor = self.db.execute(
                "UPDATE silences SET lifted_at = ? WHERE id = ? AND lifted_at IS NULL",
                [stamp(now), silence_id],
            )
        return bool(cursor.rowcount)

    def postpone(self, delivery_id: int, until: datetime) -> None:
        """Try a pending delivery no sooner than ``until`` (a digest during quiet hours)."""
        with self._atomic():
            self.db.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
                [stamp(until), delivery_id],
            )

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system."""
        try:
            self.db.execute("VACUUM")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot vacuum: {exc}") from exc
