"""Running it for years: full-text search, retention, stats and hit exports, on real
SQLite files through the real CLI. Time comes from an injected clock."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Clock, write_project

from monitor.cli import main
from monitor.daemon.indexer import SearchIndexer
from monitor.errors import StorageBusy, StorageError
from monitor.models import Article, Hit
from monitor.store import Store
from monitor.text import mask_url


def article(uid: str, title: str, text: str, feed: str = "wire") -> Article:
    return Article(
        feed=feed,
        uid=uid,
        title=title,
        link=f"https://{feed}.example.org/{uid}",
        summary=text,
        content_hash=uid,
    )


def hit(rule: str = "sanctions") -> Hit:
    return Hit(rule, "v1", "normal", ("sanctions",), "snippet", ("chat",))


def save(store: Store, clock: Clock, items: Sequence[tuple[Article, Sequence[Hit]]]) -> None:
    store.save(list(items), clock())


STORED = [
    ("a1", "EU adopts new sanctions on Russian banks", "The package targets lenders."),
    ("a2", "Prisoner exchange agreed in Istanbul", "Both sides sanctioned the swap of 95."),
    ("a3", "Troops leave Belgorod drills", "Soldiers returned to barracks after drills."),
]


@pytest.fixture
def filled(store: Store, clock: Clock) -> Store:
    for uid, title, text in STORED:
        save(store, clock, [(article(uid, title, text), [hit()] if uid == "a1" else [])])
    assert store.search("sanction") == []  # stored, not yet indexed (the daemon's job)
    assert store.unindexed() == 3
    assert store.index_search(batch=2) == 2
    assert store.index_search(batch=2) == 1
    assert store.index_search() == 0 and store.unindexed() == 0
    return store


def test_the_search_index_survives_deleting_indexed_and_unindexed_articles(
    store: Store, clock: Clock
) -> None:
    for uid, title, text in STORED:
        save(store, clock, [(article(uid, title, text), [])])
    assert store.index_search(batch=1) == 1  # a1; a2 and a3 wait
    # As retention deletes: never the newest article (its id would be given out again).
    store.db.execute("DELETE FROM articles WHERE uid IN ('a1', 'a2')")
    store.db.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")
    assert store.search("sanction") == [] and store.unindexed() == 1
    save(store, clock, [(article("a4", "New sanctions package", "More of them."), [])])
    assert store.index_search() == 2 and store.unindexed() == 0
    assert [r.link[-2:] for r in store.search("sanction OR drills")] == ["a4", "a3"]
    # The index now matches the articles exactly (rank 1: against the content table too);
    # an FTS5 'delete' of the row that was never added would have broken it.
    store.db.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', 1)")


def test_the_search_indexer_checkpoints_so_that_commits_rarely_do(
    tmp_path: Path, clock: Clock
) -> None:
    """A commit copies the write-ahead log back into the database file (waiting for the
    disk, with the poll loop stopped) only past CHECKPOINT_PAGES; the search indexer does
    it after each round, on its own thread, without waiting for anyone."""
    path = tmp_path / "loop.db"
    loop = Store(path)
    size = path.stat().st_size
    text = " ".join(f"word{n}" for n in range(400))
    for n in range(60):  # past SQLite's default of 1,000 pages, far below 10,000
        save(loop, clock, [(article(f"a{n}-{i}", f"Story {n} {i}", text), []) for i in range(20)])
    assert loop.catch_up_search() == 1200  # (so that the indexer's round commits nothing)
    wal = Path(f"{path}-wal")
    assert path.stat().st_size == size and wal.stat().st_size > 4_000_000
    indexer = SearchIndexer(path)
    try:
        assert asyncio.run(indexer.catch_up()) == 0
    finally:
        asyncio.run(indexer.close())
    assert path.stat().st_size > 4_000_000  # copied back by the indexer's checkpoint
    assert loop.search("word7")
    loop.close()


def test_a_stop_asked_of_the_search_indexer_ends_its_round_at_the_batch(
    store: Store, clock: Clock
) -> None:
    """The daemon asks the indexer to stop before it waits for the jobs in flight: a
    round then ends after the batch being indexed instead of working through a first
    cycle's backlog (tens of thousands of articles) past the stop's grace period."""
    for n in range(3):
        save(store, clock, [(article(f"a{n}-{i}", f"Story {n}", "Text."), []) for i in range(200)])
    indexer = SearchIndexer(store.path)
    try:
        assert asyncio.run(indexer.catch_up()) == 600
        save(store, clock, [(article(f"b{i}", "Later", "Text."), []) for i in range(200)])
        indexer.request_stop()
        assert asyncio.run(indexer.catch_up()) == 0  # left for the next start
    finally:
        asyncio.run(indexer.close())
    assert store.unindexed() == 200


def test_the_search_index_merges_sixteen_segments_at_a_time(store: Store, clock: Clock) -> None:
    """FTS5's automerge at 16 (4 by default), crisismerge above it (16 by default): less
    CPU to fill the index, and merges still made a little at each write."""
    config = dict(store.db.execute("SELECT k, v FROM articles_fts_config").fetchall())
    assert config["automerge"] == 16 and config["crisismerge"] == 64
    for n in range(40):  # forty segments: merged along the way, and whole
        save(store, clock, [(article(f"a{n}", f"Sanctions story {n}", "Text."), [])])
        store.index_search()
    store.db.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', 1)")
    assert len(store.search("sanctions", limit=100)) == 40


def test_search_ranks_stems_highlights_and_filters(filled: Store, clock: Clock) -> None:
    found = filled.search("sanction")
    # Stemmed ("sanctions", "sanctioned"); the title match ranks first.
    assert [r.link.rsplit("/", 1)[1] for r in found] == ["a1", "a2"]
    assert found[0].title == "EU adopts new [sanctions] on Russian banks"
    assert "[sanctioned]" in found[1].snippet
    assert found[0].rules == "sanctions" and found[1].rules is None
    assert [r.link[-2:] for r in filled.search('"prisoner exchange" AND istanbul')] == ["a2"]
    assert filled.search("title:drills")[0].link.endswith("a3")
    assert filled.search("drill*", feed="other") == []
    assert filled.search("sanction", since=clock() + timedelta(seconds=1)) == []
    with pytest.raises(StorageError, match=r"cannot search for 'AND AND'.*exact phrases"):
        filled.search("AND AND")


def test_retention_prunes_old_articles_and_hits_and_never_brings_them_back(
    store: Store, clock: Clock
) -> None:
    start = clock()
    save(store, clock, [(article("old-plain", "Weather", "Rain"), [])])
    save(store, clock, [(article("old-hit", "Sanctions", "Sanctions on oil"), [hit()])])
    clock.advance(days=40)
    save(store, clock, [(article("new-plain", "Weather again", "Sun"), [])])
    days = 86400.0

    assert store.prune(clock(), articles=30 * days, hits=365 * days, dry_run=True) == {
        "hits": 0,
        "articles": 1,
        "notices": 0,
    }
    counts = store.prune(clock(), articles=30 * days, hits=365 * days)
    assert counts["articles"] == 1 and counts["hits"] == 0
    uids = {r[0] for r in store.db.execute("SELECT uid FROM articles")}
    assert uids == {"old-hit", "new-plain"}
    # The feed still lists the pruned item: it is not new again.
    assert store.unseen("wire", [article("old-plain", "Weather", "Rain")]) == []
    assert store.search("rain") == []  # the search index follows the deletes

    # A year on, the hit goes too, with its delivery and its article; a hit whose alert
    # still waits stays, whatever its age, and so does the newest (ids are never reused).
    clock.advance(days=330)
    store.db.execute("UPDATE deliveries SET status = 'sent'")
    save(store, clock, [(article("fresh", "Sanctions again", "More sanctions"), [hit()])])
    waiting = store.db.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'")
    assert waiting.fetchone()[0] == 1
    counts = store.prune(clock(), articles=30 * days, hits=365 * days)
    assert counts["hits"] == 1 and counts["articles"] == 2
    assert store.db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 1
    assert [r[0] for r in store.db.execute("SELECT uid FROM articles")] == ["fresh"]
    assert counts["stories"] >= 1
    # Ids pruned more than the hit retention ago are forgotten.
    clock.advance(days=400)
    save(store, clock, [(article("newest", "Weather", "Fog"), [])])
    store.prune(clock(), articles=30 * days, hits=365 * days)
    assert store.db.execute("SELECT count(*) FROM pruned_uids").fetchone()[0] == 0
    assert start < clock()


def cli(project: Any, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--config", str(project.config)])
    return result


def test_search_stats_prune_and_hit_exports_on_the_command_line(
    tmp_path: Path, clock: Clock
) -> None:
    feeds = [
        {"name": "wire", "url": "https://news.example.org/wire.xml"},
        {"name": "paused", "url": "https://news.example.org/p.xml", "enabled": False},
    ]
    project = write_project(tmp_path / "p", feeds=feeds, channels={"chat": "json://127.0.0.1:9/x"})
    store = Store(project.database)
    for uid, title, text in STORED:
        save(store, clock, [(article(uid, title, text), [hit()] if uid != "a3" else [])])
    save(store, clock, [(article("t1", "Tass on sanctions", "Sanctions text", "tass"), [hit()])])
    # Feed states: one configured and fine; one paused, one removed from the settings,
    # both failing: only configured, enabled feeds are counted.
    for name in ("wire", "paused", "removed"):
        store.record_fetch(name, f"https://news.example.org/{name}.xml", clock(), outcome="ok")
    for name in ("paused", "removed"):
        store.record_fetch(name, "https://x.org/", clock(), outcome="error", error="HTTP 500")
    store.close()

    result = cli(project, "search", "sanction", "--json")
    assert result.exit_code == 0, result.output
    assert {r["feed"] for r in json.loads(result.output)} == {"wire", "tass"}
    shown = cli(project, "search", "belgorod").output
    assert "[Belgorod]" in shown and "a3" in shown
    bad = cli(project, "search", "AND AND")
    assert bad.exit_code == 1 and "exact phrases" in bad.output

    stats = json.loads(cli(project, "stats", "--json").output)
    assert stats["articles"] == 4 and stats["hits"] == 3
    # (stored at the test clock's time, months before the command's real now)
    assert stats["rules"] == [{"rule": "sanctions", "hits": 3, "last_day": 0}]
    assert stats["deliveries"] == {"pending": 3}
    assert (stats["feeds_polled"], stats["feeds_failing"], stats["feeds_stopped"]) == (1, 0, 0)
    assert "articles   4" in cli(project, "stats").output

    rows = json.loads(cli(project, "hits", "--feed", "tass", "--json").output)
    assert [r["title"] for r in rows] == ["Tass on sanctions"]
    assert json.loads(cli(project, "hits", "--since", "2099-01-01", "--json").output) == []
    assert json.loads(cli(project, "hits", "--since", "1d", "--json").output) == []
    since = ["--since", "2026-03-02", "--until", "2026-03-03T00:00"]
    assert len(json.loads(cli(project, "hits", *since, "-n", "0", "--json").output)) == 3
    table = list(csv.DictReader(io.StringIO(cli(project, "hits", "--csv", "-n", "0").output)))
    assert len(table) == 3 and table[0]["rule"] == "sanctions" and table[0]["terms"] == "sanctions"
    assert cli(project, "hits", "--since", "someday").exit_code == 2

    # The article without hits is months old by the command's clock: past 30 days.
    assert "would delete: hits 0, articles 1" in cli(project, "prune", "--dry-run").output
    assert json.loads(cli(project, "prune", "--json").output)["articles"] == 1
    assert json.loads(cli(project, "stats", "--json").output)["articles"] == 3


def test_migrations_run_in_order_and_a_newer_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "news.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
        assert names == sorted(names) and names[0] == "0001_initial"
        assert names[-1] == "0013_story_pending"
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('news-monitor', '0099_from_the_future', '2030-01-01')"
        )
    with pytest.raises(StorageError, match=r"written by a newer news-monitor.*0099_from_the"):
        Store(path)


def test_daemon_serves_metrics_and_health(
    tmp_path: Path, feed_server: Any, feed_dir: Path, webhook: Any, start_daemon: Any
) -> None:
    import re
    import urllib.request

    from conftest import Item, wait_for, write_rss
    from prometheus_client.parser import text_string_to_metric_families

    write_rss(
        feed_dir / "wire.xml",
        [Item("EU agrees new sanctions", "A package of sanctions.", "https://e.org/1", "g-1")],
    )
    project = write_project(
        tmp_path / "p",
        feeds=[{"name": "wire", "url": feed_server.url("wire.xml"), "interval": "1s"}],
        channels={"chat": webhook.url("hook")},
        default_channels=["chat"],
        rules="rules:\n  - name: sanctions\n    any: [sanctions]\n",
        fetch={"timeout": "5s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]},
        delivery={"interval": "200ms"},
        extra={"metrics": {"listen": "127.0.0.1:0"}},
    )
    daemon = start_daemon(project)
    wait_for(lambda: len(webhook.bodies) == 1, message="the alert")
    found = wait_for(
        lambda: re.search(r"metrics_listening address=(\S+)metrics", daemon.stderr()),
        message="the metrics address in the log",
    )
    base = found.group(1)

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(base + "metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    samples = wait_for(
        lambda: (
            (m := scrape()).get(
                "news_monitor_deliveries_total[('channel', 'chat'), ('outcome', 'sent')]"
            )
            and m
        ),
        message="the sent delivery counted",
    )
    assert samples["news_monitor_polls_total[('outcome', 'ok')]"] >= 1
    assert samples["news_monitor_hits_total[('rule', 'sanctions')]"] == 1
    assert samples["news_monitor_items_new_total[]"] == 1
    assert samples["news_monitor_alert_latency_seconds_count[]"] == 1
    assert samples["news_monitor_feeds[]"] == 1
    with urllib.request.urlopen(base + "health", timeout=5) as response:
        assert response.status == 200
    assert daemon.terminate() == 0, daemon.stderr()


def test_write_transactions_take_the_lock_before_they_read(tmp_path: Path) -> None:
    # A transaction begun deferred that reads, then writes, fails at once if another
    # connection (the search indexer) committed in between: WAL gives no timeout for that.
    # So the store takes the write lock when it begins, and the other writer waits.
    first, second = Store(tmp_path / "news.db"), Store(tmp_path / "news.db")
    second.db.conn.execute("PRAGMA busy_timeout = 0")
    try:
        with first._atomic():
            first.db.execute("SELECT count(*) FROM articles").fetchone()
            with pytest.raises(StorageBusy):
                second.index_search()
        assert second.index_search() == 0  # free again after the commit
    finally:
        first.close()
        second.close()


def test_feed_urls_masked_by_an_older_version_are_masked_again(tmp_path: Path) -> None:
    """Migration 0012: "https://***@ss@host" (an @ in the password, masked only to the
    first @ before) becomes what mask_url gives the configured URL now, so the feed's
    state (validators, a 410 stop, a Retry-After window) still belongs to it."""
    import sqlite_utils

    from monitor.store.migrations import migrations

    path = tmp_path / "news.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="0012_feed_ttl")
    db.execute(
        "INSERT INTO feeds (name, url, moved_to, disabled) VALUES (?, ?, ?, ?)",
        ["wire", "https://***@ss@example.org/feed", "https://***@ss@example.org/new", "410"],
    )
    db.execute("INSERT INTO feeds (name, url) VALUES ('plain', 'https://example.org/a@b')")
    db.conn.commit()
    db.conn.close()
    store = Store(path)
    try:
        wire = store.feed_state("wire")
        assert wire.url == mask_url("https://reader:pa@ss@example.org/feed")
        assert wire.moved_to == "https://***@example.org/new"
        assert wire.disabled == "410" and wire.ttl is None
        assert store.feed_state("plain").url == "https://example.org/a@b"
    finally:
        store.close()
