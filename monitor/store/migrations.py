"""The schema's history: named, ordered migrations (sqlite-utils), applied at open.

A migration is never edited once released: databases in the field have run it. The
schema they add up to is written out whole in monitor/store/schema.py.
"""

from __future__ import annotations

from itertools import groupby, islice
from operator import itemgetter

import sqlite_utils
from sqlite_utils.migrations import Migrations

from monitor.stories import pack
from monitor.text import mask_url

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
    from monitor.store.stories import PER_KEY  # the index's own bound, defined with it

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
