"""Running it for years: full-text search, retention, stats and hit exports, on real
SQLite files through the real CLI. Time comes from an injected clock."""

from __future__ import annotations

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
from monitor.errors import StorageError
from monitor.models import Article, Hit
from monitor.store import Store


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
    return store


def test_search_ranks_stems_highlights_and_filters(filled: Store, clock: Clock) -> None:
    found = filled.search("sanction")
    # Stemmed ("sanctions", "sanctioned"); the title match ranks first.
    assert [r["link"].rsplit("/", 1)[1] for r in found] == ["a1", "a2"]
    assert found[0]["title"] == "EU adopts new [sanctions] on Russian banks"
    assert "[sanctioned]" in found[1]["snippet"]
    assert found[0]["rules"] == "sanctions" and found[1]["rules"] is None
    assert [r["link"][-2:] for r in filled.search('"prisoner exchange" AND istanbul')] == ["a2"]
    assert filled.search("title:drills")[0]["link"].endswith("a3")
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

    # A year on, the hit goes too, with its delivery and its article.
    clock.advance(days=330)
    counts = store.prune(clock(), articles=30 * days, hits=365 * days)
    assert counts["hits"] == 1 and counts["articles"] == 2
    assert store.db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM articles").fetchone()[0] == 0
    assert counts["stories"] >= 1
    # Ids pruned more than the hit retention ago are forgotten.
    clock.advance(days=400)
    store.prune(clock(), articles=30 * days, hits=365 * days)
    assert store.db.execute("SELECT count(*) FROM pruned_uids").fetchone()[0] == 0
    assert start < clock()


def cli(project: Any, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--config", str(project.config)])
    return result


def test_search_stats_prune_and_hit_exports_on_the_command_line(
    tmp_path: Path, clock: Clock
) -> None:
    project = write_project(tmp_path / "p", channels={"chat": "json://127.0.0.1:9/x"})
    store = Store(project.database)
    for uid, title, text in STORED:
        save(store, clock, [(article(uid, title, text), [hit()] if uid != "a3" else [])])
    save(store, clock, [(article("t1", "Tass on sanctions", "Sanctions text", "tass"), [hit()])])
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
