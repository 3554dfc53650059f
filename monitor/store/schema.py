"""The current schema, whole: what a new database is made from.

Databases made by an older version get here through monitor/store/migrations.py (the
history); a test checks that both roads lead to the same schema. A change to the schema
is made twice: a new migration, and here.

Timestamps are ISO 8601 UTC text (``2026-11-24T07:21:13Z``), which sorts; lists (terms,
channels, categories) are JSON text; word and article-id sets of the story index are
packed 32-bit integers (monitor.stories.pack).
"""

from __future__ import annotations

import sqlite3

import sqlite_utils

from monitor.store.migrations import FTS_TOKENIZER, migrations

SCHEMA = f"""
-- Feeds: the HTTP state of each feed (by its configured name), for the next poll.
CREATE TABLE feeds (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,                 -- masked: credentials never reach the file
    etag TEXT,
    last_modified TEXT,
    last_fetch TEXT,
    last_success TEXT,
    last_outcome TEXT,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_kind TEXT,
    next_poll TEXT,
    retry_after_until TEXT,            -- never polled before this (Retry-After)
    moved_to TEXT,                     -- a permanent redirect's target (masked)
    disabled TEXT,                     -- why it stopped for good (410 Gone)
    last_new TEXT,                     -- when it last had a new item
    failing_alerted INTEGER NOT NULL DEFAULT 0,
    quiet_alerted INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER                        -- RSS <ttl>, minutes
);

-- Articles: every item stored, once per (feed, uid).
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
    categories TEXT NOT NULL DEFAULT '[]',
    story_id INTEGER REFERENCES stories (id),   -- NULL: waiting in story_pending
    source TEXT NOT NULL DEFAULT '',            -- the outlet (monitor.stories.outlet)
    UNIQUE (feed, uid)
);
CREATE INDEX articles_seen_at ON articles (seen_at);
CREATE INDEX articles_content_hash ON articles (content_hash);
CREATE INDEX articles_story ON articles (story_id, source);
CREATE INDEX articles_feed_seen ON articles (feed, seen_at);

-- Ids of pruned articles: a feed that still lists one does not bring it back as new.
CREATE TABLE pruned_uids (
    feed TEXT NOT NULL,
    uid TEXT NOT NULL,
    pruned_at TEXT NOT NULL,
    PRIMARY KEY (feed, uid)
) WITHOUT ROWID;

-- Hits: a rule matched an article (with the terms and snippet that say why).
CREATE TABLE hits (
    id INTEGER PRIMARY KEY,
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    rule TEXT NOT NULL,
    rule_version TEXT NOT NULL,
    severity TEXT NOT NULL,
    terms TEXT NOT NULL,
    snippet TEXT NOT NULL,
    created_at TEXT NOT NULL,
    channels TEXT NOT NULL DEFAULT '[]',
    held INTEGER NOT NULL DEFAULT 0,   -- waiting for the story's min_sources
    muted TEXT,                        -- why it was stored without an alert
    UNIQUE (article_id, rule)
);
CREATE INDEX hits_created_at ON hits (created_at);
CREATE INDEX hits_held ON hits (article_id) WHERE held = 1;
CREATE INDEX hits_rule ON hits (rule, created_at);

-- The versions of each rule the daemon ran (a hit names the one it matched).
CREATE TABLE rule_versions (
    rule TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    first_active TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, version)
);

-- Stories: the articles of many outlets about one event.
CREATE TABLE stories (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    articles INTEGER NOT NULL DEFAULT 0,
    sources INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX stories_last_seen ON stories (last_seen);

-- The story index: each recent article's sketch, its keys (id = article_id * 32 + band)
-- and, per key, the newest article ids under it (packed, oldest first).
CREATE TABLE story_sketches (
    article_id INTEGER PRIMARY KEY,
    story_id INTEGER NOT NULL,
    words BLOB NOT NULL,
    numbers BLOB NOT NULL
);
CREATE TABLE story_keys (id INTEGER PRIMARY KEY, key INTEGER NOT NULL);
CREATE TABLE story_postings (key INTEGER PRIMARY KEY, articles BLOB NOT NULL);
-- A first poll's articles waiting for their story (Store.cluster_pending).
CREATE TABLE story_pending (
    article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
    words BLOB NOT NULL,
    numbers BLOB NOT NULL
);

-- The alert steps taken per (story, rule): 0 the first alert, N the follow-up at N
-- sources.
CREATE TABLE story_alerts (
    story_id INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    rule TEXT NOT NULL,
    step INTEGER NOT NULL,
    hit_id INTEGER NOT NULL REFERENCES hits (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (story_id, rule, step)
);
CREATE INDEX story_alerts_hit ON story_alerts (hit_id);

-- Realert windows: when (rule, key value) was last alerted, and the window it opened.
CREATE TABLE realerts (
    rule TEXT NOT NULL,
    value TEXT NOT NULL,
    last_at TEXT NOT NULL,
    window REAL NOT NULL,
    PRIMARY KEY (rule, value)
);

-- System notices (feed health) for the operator's channels.
CREATE TABLE notices (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Digests: many alerts of one channel sent as one message.
CREATE TABLE digests (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    reason TEXT NOT NULL,
    label TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

-- The outbox: one row per message to send (a hit's alert step, a notice or a digest)
-- and channel, with its idempotency key. AUTOINCREMENT: an id is never given twice.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hit_id INTEGER REFERENCES hits (id) ON DELETE CASCADE,
    notice_id INTEGER REFERENCES notices (id) ON DELETE CASCADE,
    digest_id INTEGER REFERENCES digests (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending',   -- deferred, batched, sent, dead, muted
    batch TEXT,                               -- the digest batch a deferred one waits for
    release_at TEXT,
    in_digest INTEGER REFERENCES digests (id) ON DELETE SET NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    queued_at TEXT NOT NULL,                  -- max age counts from here
    sent_at TEXT,
    CHECK ((hit_id IS NOT NULL) + (notice_id IS NOT NULL) + (digest_id IS NOT NULL) = 1),
    UNIQUE (hit_id, channel, step),
    UNIQUE (notice_id, channel),
    UNIQUE (digest_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_hit ON deliveries (hit_id);
CREATE INDEX deliveries_deferred ON deliveries (channel, batch) WHERE status = 'deferred';
CREATE INDEX deliveries_in_digest ON deliveries (in_digest);

-- Silences: time-boxed mutes of a rule, a feed or a story.
CREATE TABLE silences (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('rule', 'feed', 'story')),
    target TEXT NOT NULL,
    until TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    lifted_at TEXT
);

-- Full-text search: an external-content FTS5 index filled in batches by the indexer
-- (fts_state.indexed: every article up to this id is in it); the triggers keep the
-- indexed ones in step when they change or go.
CREATE VIRTUAL TABLE articles_fts USING fts5(
    title, summary, content, content='articles', content_rowid='id',
    tokenize='{FTS_TOKENIZER}'
);
CREATE TABLE fts_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed INTEGER NOT NULL
);
INSERT INTO fts_state (id, indexed) VALUES (1, 0);
-- Segments merged a few at a time, never all at once inside one write (migration 0011).
INSERT INTO articles_fts (articles_fts, rank) VALUES ('automerge', 16);
INSERT INTO articles_fts (articles_fts, rank) VALUES ('crisismerge', 64);
CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles
WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, summary, content)
    VALUES ('delete', old.id, old.title, old.summary, old.content);
END;
CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, summary, content
ON articles WHEN old.id <= (SELECT indexed FROM fts_state) BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, summary, content)
    VALUES ('delete', old.id, old.title, old.summary, old.content);
    INSERT INTO articles_fts (rowid, title, summary, content)
    VALUES (new.id, new.title, new.summary, new.content);
END;
"""


def statements(script: str) -> list[str]:
    """The statements of ``script``, one by one (a trigger's body kept whole)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out


def create(db: sqlite_utils.Database) -> None:
    """Make the current schema in the empty database ``db`` (inside the caller's
    transaction), with every migration recorded as applied: they are its history,
    already contained."""
    migrations.ensure_migrations_table(db)
    for statement in statements(SCHEMA):
        db.execute(statement)
    # sqlite-utils records an applied migration this way (Migrations.apply).
    for migration in migrations._migrations:
        migrations._record_applied(db, migration.name)
