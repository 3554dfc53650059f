"""poll_feed end to end: the real FeedServer over HTTP, a real SQLite file, real rules."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RULES, Clock, Item, write_rss

from monitor.devserver import FeedServer
from monitor.fetch import fetch, make_client
from monitor.match import Matcher, load_rules
from monitor.models import Article, FeedConfig, FetchResult, PollResult
from monitor.parse import parse_feed
from monitor.pipeline import PollContext, poll_feed
from monitor.store import Store
from monitor.text import content_hash, stamp

TROOPS = Item(
    title="Troops mass near the border",
    description="Thousands of soldiers were seen moving toward the frontier on Tuesday.",
    link="https://news.example.org/world/troops-border",
    guid="wire-0001",
    published=datetime(2026, 3, 2, 8, 30, tzinfo=UTC),
)
SANCTIONS = Item(
    title="EU agrees new sanctions on Russian oil",
    description="Ministers agreed a ninth package of sanctions and an embargo on crude.",
    link="https://news.example.org/europe/sanctions",
    guid="wire-0002",
)
BAKERY = Item(
    title="Local bakery wins national award",
    description="The sourdough impressed the judges.",
    link="https://news.example.org/local/bakery",
    guid="wire-0003",
)
EMBARGO = Item(
    title="Arms embargo extended for another year",
    description="The council voted to extend the arms embargo.",
    link="https://news.example.org/world/embargo",
    guid="wire-0004",
)


@pytest.fixture
def matcher(tmp_path: Path) -> Matcher:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "main.yaml").write_text(RULES, encoding="utf-8")
    ruleset = load_rules(rules_dir)
    assert ruleset.errors == ()
    return Matcher(ruleset.rules)


class Poller:
    """Runs poll_feed once per call, with a fresh real httpx client, recording the
    headers of every request the client sends (an event hook, not a mock)."""

    def __init__(self, store: Store, matcher: Matcher, clock: Clock) -> None:
        self.store = store
        self.matcher = matcher
        self.clock = clock
        self.sent_headers: list[httpx.Headers] = []
        #: Extra PollContext settings (operator channels, health thresholds...).
        self.settings: dict[str, Any] = {}

    def __call__(self, feed: FeedConfig, default_channels: Sequence[str] = ("chat",)) -> PollResult:
        async def record(request: httpx.Request) -> None:
            self.sent_headers.append(request.headers)

        async def main() -> PollResult:
            async with make_client() as client:
                client.event_hooks = {"request": [record], "response": []}

                async def fetch_with(url: str, **kw: Any) -> FetchResult:
                    return await fetch(client, url, timeout=5.0, **kw)

                async def parse_with(*args: Any) -> list[Article]:
                    return parse_feed(*args)

                ctx = PollContext(
                    store=self.store,
                    fetch=fetch_with,
                    parse=parse_with,
                    default_channels=default_channels,
                    now=self.clock,
                    **self.settings,
                )
                return await poll_feed(feed, self.matcher, ctx)

        return asyncio.run(main())


@pytest.fixture
def poll(store: Store, matcher: Matcher, clock: Clock) -> Poller:
    return Poller(store, matcher, clock)


def rows(store: Store, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return list(store.db.query(sql, list(params)))


def hits_by_title(store: Store) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows(
        store,
        """SELECT a.title, h.id, h.rule, h.terms, h.snippet, h.severity
           FROM hits h JOIN articles a ON a.id = h.article_id ORDER BY h.id""",
    ):
        out.setdefault(row["title"], []).append(row)
    return out


def deliveries(store: Store) -> list[tuple[str, str, str]]:
    """(rule, channel, status) of every delivery, in creation order."""
    return [
        (r["rule"], r["channel"], r["status"])
        for r in rows(
            store,
            """SELECT h.rule, d.channel, d.status FROM deliveries d
               JOIN hits h ON h.id = d.hit_id ORDER BY d.id""",
        )
    ]


@pytest.fixture
def wire(feed_dir: Path, feed_server: FeedServer) -> Callable[[Sequence[Item]], FeedConfig]:
    """Write ``wire.xml`` with the given items; returns the FeedConfig pointing at it."""

    def publish(items: Sequence[Item], **kwargs: Any) -> FeedConfig:
        write_rss(feed_dir / "wire.xml", items, **kwargs)
        return FeedConfig("wire", feed_server.url("wire.xml"), interval=60)

    return publish


def test_first_poll_stores_articles_hits_and_one_delivery_per_hit_and_channel(
    wire: Callable[..., FeedConfig], poll: Poller, store: Store, clock: Clock
) -> None:
    feed = wire([TROOPS, SANCTIONS, BAKERY])

    result = poll(feed, default_channels=("chat",))

    assert result == PollResult(
        "wire", "ok", entries=3, new_articles=3, hits=2, next_poll=clock() + timedelta(seconds=60)
    )
    articles = rows(store, "SELECT feed, uid, title, link, published, seen_at FROM articles")
    assert sorted(a["uid"] for a in articles) == ["wire-0001", "wire-0002", "wire-0003"]
    troops = next(a for a in articles if a["uid"] == "wire-0001")
    assert troops["link"] == TROOPS.link
    assert troops["published"] == "2026-03-02T08:30:00Z"
    assert troops["seen_at"] == stamp(clock())

    hits = hits_by_title(store)
    assert set(hits) == {TROOPS.title, SANCTIONS.title}
    [troop_hit] = hits[TROOPS.title]
    assert troop_hit["rule"] == "troop-movements"
    assert troop_hit["severity"] == "urgent"
    assert json.loads(troop_hit["terms"]) == ["troops", "soldiers", "border", "frontier"]
    assert "soldiers were seen moving toward the frontier" in troop_hit["snippet"]
    [sanction_hit] = hits[SANCTIONS.title]
    assert json.loads(sanction_hit["terms"]) == ["sanctions", "embargo"]
    assert "package of sanctions and an embargo" in sanction_hit["snippet"]

    # troop-movements names no channels -> the default; sanctions names mail and chat.
    assert deliveries(store) == [
        ("troop-movements", "chat", "pending"),
        ("sanctions", "mail", "pending"),
        ("sanctions", "chat", "pending"),
    ]
    due = store.due_deliveries(clock())
    assert len(due) == 3
    assert {d.attempts for d in due} == {0}

    [state] = store.feeds()
    assert state.last_outcome == "ok"
    assert state.etag and state.last_modified
    assert state.consecutive_errors == 0
    assert state.last_error is None


def test_second_poll_sends_validators_and_gets_304(
    wire: Callable[..., FeedConfig],
    poll: Poller,
    store: Store,
    feed_server: FeedServer,
    clock: Clock,
) -> None:
    feed = wire([TROOPS, SANCTIONS])
    assert poll(feed).outcome == "ok"
    etag = store.feed_state("wire").etag
    before = store.counts()

    clock.advance(60)
    result = poll(feed)

    assert result.outcome == "not-modified"
    assert result.hits == result.new_articles == 0
    assert feed_server.requests["wire.xml"] == 2
    assert feed_server.not_modified["wire.xml"] == 1
    first, second = poll.sent_headers
    assert "If-None-Match" not in first
    assert second["If-None-Match"] == etag
    assert "If-Modified-Since" in second
    assert store.counts() == before
    [state] = store.feeds()
    assert state.last_outcome == "not-modified"
    assert state.last_fetch == state.last_success == clock()
    assert state.etag == etag


def test_changed_feed_alerts_only_the_new_item(
    wire: Callable[..., FeedConfig],
    poll: Poller,
    store: Store,
    feed_server: FeedServer,
    clock: Clock,
) -> None:
    feed = wire([TROOPS, SANCTIONS, BAKERY])
    poll(feed)
    old_hits = hits_by_title(store)
    old_deliveries = deliveries(store)

    clock.advance(300)
    wire([EMBARGO, TROOPS, SANCTIONS, BAKERY])  # newest first, as feeds do
    result = poll(feed)

    assert result == PollResult(
        "wire", "ok", entries=4, new_articles=1, hits=1, next_poll=clock() + timedelta(seconds=60)
    )
    assert feed_server.not_modified["wire.xml"] == 0  # new ETag: full response
    hits = hits_by_title(store)
    assert {k: v for k, v in hits.items() if k != EMBARGO.title} == old_hits
    [embargo] = hits[EMBARGO.title]
    assert embargo["rule"] == "sanctions"
    assert json.loads(embargo["terms"]) == ["embargo"]
    assert deliveries(store) == [
        *old_deliveries,
        ("sanctions", "mail", "pending"),
        ("sanctions", "chat", "pending"),
    ]
    assert rows(store, "SELECT count(*) AS n FROM articles")[0]["n"] == 4

    # A third poll of the same bytes is a 304 and changes nothing.
    clock.advance(300)
    assert poll(feed).outcome == "not-modified"
    assert len(deliveries(store)) == len(old_deliveries) + 2


def test_baseline_first_poll_of_a_new_feed_is_stored_and_matched_not_alerted(
    wire: Callable[..., FeedConfig], poll: Poller, store: Store, clock: Clock
) -> None:
    poll.settings = {"baseline": True}
    feed = wire([TROOPS, SANCTIONS, BAKERY])
    assert poll(feed).hits == 2
    assert deliveries(store) == []
    assert {r["muted"] for r in rows(store, "SELECT muted FROM hits")} == {
        "baseline: the feed's first poll"
    }
    # From the second poll on, new items alert as usual.
    clock.advance(300)
    wire([EMBARGO, TROOPS, SANCTIONS, BAKERY])
    poll(feed)
    assert deliveries(store) == [("sanctions", "mail", "pending"), ("sanctions", "chat", "pending")]
    # A feed can opt out of the baseline.
    # A baseline hit is not its story's alert: the same article from a feed that opted
    # out of the baseline (or is past its first poll) alerts.
    other = replace(feed, name="other", baseline=False)
    poll(other)
    assert ("troop-movements", "chat", "pending") in deliveries(store)


def test_item_without_guid_uses_link_and_without_either_a_content_hash(
    wire: Callable[..., FeedConfig], poll: Poller, store: Store, clock: Clock
) -> None:
    linked = Item(
        title="Soldiers cross the frontier at dawn",
        description="Witnesses counted dozens of troops.",
        link="https://news.example.org/world/dawn-crossing",
    )
    bare = Item(
        title="Embargo talks stall",
        description="No agreement on the embargo was reached.",
    )
    feed = wire([linked, bare])

    result = poll(feed)

    assert result == PollResult(
        "wire", "ok", entries=2, new_articles=2, hits=2, next_poll=clock() + timedelta(seconds=60)
    )
    first_deliveries = deliveries(store)
    assert len(first_deliveries) == 3  # troop-movements -> chat; sanctions -> mail, chat
    uids = {r["title"]: r["uid"] for r in rows(store, "SELECT title, uid FROM articles")}
    assert uids[linked.title] == linked.link
    assert uids[bare.title] == "hash:" + content_hash(bare.title, bare.description, "")

    # The same items re-served with other bytes (new ETag, new order, one more item):
    # the link and hash ids are stable, so neither is stored or alerted again.
    clock.advance(120)
    wire([BAKERY, bare, linked], comment="re-rendered by the CMS")
    again = poll(feed)
    assert again == PollResult(
        "wire", "ok", entries=3, new_articles=1, hits=0, next_poll=clock() + timedelta(seconds=60)
    )
    assert rows(store, "SELECT count(*) AS n FROM hits")[0]["n"] == 2
    assert deliveries(store) == first_deliveries


def test_missing_feed_records_an_error_and_does_not_raise(
    poll: Poller, store: Store, feed_server: FeedServer, clock: Clock
) -> None:
    url = feed_server.url("gone.xml")
    result = poll(FeedConfig("gone", url, interval=60))

    assert result.outcome == "error"
    assert result.error is not None
    assert url in result.error
    assert "404" in result.error
    [state] = store.feeds()
    assert state.name == "gone"
    assert state.last_outcome == "error"
    assert state.consecutive_errors == 1
    assert "404" in state.last_error
    assert state.last_success is None
    assert store.counts() == {"articles": 0, "hits": 0, "pending": 0, "sent": 0}

    clock.advance(60)
    poll(FeedConfig("gone", url, interval=60))
    assert store.feeds()[0].consecutive_errors == 2


def test_binary_garbage_is_an_error_naming_the_url(
    feed_dir: Path, feed_server: FeedServer, poll: Poller, store: Store
) -> None:
    (feed_dir / "noise.xml").write_bytes(b"\x00\x01garbage \xff\xfe not xml at all\n")
    url = feed_server.url("noise.xml")

    result = poll(FeedConfig("noise", url, interval=60))

    assert result.outcome == "error"
    assert result.error is not None
    assert url in result.error
    assert "not an RSS or Atom feed" in result.error
    [state] = store.feeds()
    assert state.last_outcome == "error"
    assert "not an RSS or Atom feed" in state.last_error
    assert state.etag is None  # validators of a bad response are not kept


def test_html_page_instead_of_a_feed_is_an_error(
    feed_dir: Path, feed_server: FeedServer, poll: Poller, store: Store
) -> None:
    (feed_dir / "moved.xml").write_text(
        "<!doctype html><html><head><title>Example News</title></head><body>"
        "<h1>Our feed has moved</h1><p>See <a href='/rss'>the new feed</a>.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    url = feed_server.url("moved.xml")

    result = poll(FeedConfig("moved", url, interval=60))

    assert result.outcome == "error"
    assert result.error is not None
    assert url in result.error
    assert "not an RSS or Atom feed" in result.error
    [state] = store.feeds()
    assert state.last_outcome == "error"
    assert state.consecutive_errors == 1
    assert "not at a web page" in state.last_error
    assert store.counts()["articles"] == 0


def test_feed_credentials_never_appear_in_errors_or_logs(
    feed_server: FeedServer,
    refused_port: int,
    poll: Poller,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Other tests run the CLI, which quietens httpx; make sure its records are seen here.
    caplog.set_level(logging.DEBUG, logger="httpx")
    missing = f"http://reader:s3cr3t-token@127.0.0.1:{feed_server.port}/private.xml"
    down = f"http://reader:s3cr3t-token@127.0.0.1:{refused_port}/private.xml"

    results = [
        poll(FeedConfig("missing", missing, interval=60)),
        poll(FeedConfig("down", down, interval=60)),
    ]

    assert feed_server.requests["private.xml"] == 1  # the first one really was fetched
    assert poll.sent_headers[0]["Authorization"].startswith("Basic ")  # creds were used
    for result in results:
        assert result.outcome == "error"
        assert result.error is not None
        assert "s3cr3t-token" not in result.error
        assert "127.0.0.1" in result.error  # still names the host it tried
    assert "404" in results[0].error  # type: ignore[operator]
    assert "ConnectError" in results[1].error  # type: ignore[operator]
    states = {s.name: s for s in store.feeds()}
    assert set(states) == {"missing", "down"}
    for state in states.values():
        assert state.last_outcome == "error"
        assert "s3cr3t-token" not in state.last_error
    # Every log record, not only ours: httpx logs each request URL at INFO (shown by
    # `news-monitor -vv`), so the password must never be part of the URL it is given.
    assert any(r.name == "httpx" for r in caplog.records)
    assert any("outcome=error" in r.getMessage() for r in caplog.records)
    leaks = [f"{r.name}: {r.getMessage()}" for r in caplog.records if "s3cr3t" in r.getMessage()]
    assert leaks == []


def notices(store: Store) -> list[tuple[str, str, str]]:
    return [
        (r["kind"], r["channel"], r["title"])
        for r in rows(
            store,
            """SELECT n.kind, d.channel, n.title FROM deliveries d
               JOIN notices n ON n.id = d.notice_id ORDER BY d.id""",
        )
    ]


def test_failing_feed_backs_off_and_tells_the_operator_once_then_recovery(
    poll: Poller, store: Store, feed_dir: Path, feed_server: FeedServer, clock: Clock
) -> None:
    poll.settings = {"operator_channels": ("ops",), "health_failures": 3}
    feed = FeedConfig("flaky", feed_server.url("flaky.xml"), interval=60)
    delays = []
    for _ in range(5):  # 404 five times
        result = poll(feed)
        assert result.outcome == "error" and result.next_poll is not None
        delays.append((result.next_poll - clock()).total_seconds())
        clock.advance(delays[-1])
    assert delays == [60, 120, 240, 480, 960]  # exponential backoff per feed
    assert notices(store) == [("feed-failing", "ops", "feed flaky is failing (3 errors in a row)")]
    write_rss(feed_dir / "flaky.xml", [BAKERY])
    assert poll(feed).outcome == "ok"
    assert [n[0] for n in notices(store)] == ["feed-failing", "feed-recovered"]
    state = store.feed_state("flaky")
    assert state.consecutive_errors == 0 and state.failing_alerted == 0
    assert state.last_error is None and state.next_poll is not None


def test_an_article_its_hits_and_deliveries_are_one_transaction(store: Store) -> None:
    from monitor.models import Hit

    statements: list[str] = []
    traced: list[str] = []

    def trace(sql: str) -> None:
        # The search index's triggers trace the statement that fired them again, and
        # their own work as comments: each statement is counted once.
        if sql.startswith("--"):
            return
        if not traced or traced[-1] != sql:
            statements.append(sql.split()[0].upper())
        traced.append(sql)

    store.db.conn.set_trace_callback(trace)
    hit = Hit(
        rule="r",
        rule_version="v",
        severity="normal",
        terms=("x",),
        snippet="s",
        channels=("chat", "mail"),
    )
    articles = [(Article(feed="f", uid=str(i), title="t", link="l"), [hit]) for i in range(3)]
    store.save(articles, datetime(2026, 3, 2, tzinfo=UTC))
    store.db.conn.set_trace_callback(None)
    writes = [s for s in statements if s in ("BEGIN", "SAVEPOINT", "COMMIT", "RELEASE", "INSERT")]
    # 3 articles, 3 stories (one each: too short to compare), 3 hits, 3 story alert steps,
    # 6 deliveries.
    assert writes.count("INSERT") == 18
    assert writes[0] in ("BEGIN", "SAVEPOINT") and writes[-1] in ("COMMIT", "RELEASE")
    assert writes.count("COMMIT") + writes.count("RELEASE") == 1


def test_the_same_wire_story_in_two_feeds_is_one_story_alerted_once(
    feed_dir: Path, feed_server: FeedServer, poll: Poller, store: Store, clock: Clock
) -> None:
    body = (
        "Thousands of soldiers were seen moving toward the frontier near Belgorod on "
        "Tuesday, border guards in Kharkiv said, as 40 armoured vehicles crossed the "
        "Vovchansk checkpoint and 1,200 troops set up camp outside Shebekino."
    )
    wire_copy = Item("Troops mass near the border", body, "https://wire.example/1", "w-1")
    retitled = Item(
        "Kharkiv border guards report troop build-up",
        body + " Local officials asked residents to stay calm.",
        "https://www.daily.example/world/troops",
        "d-77",
    )
    write_rss(feed_dir / "wire.xml", [wire_copy, BAKERY])
    write_rss(feed_dir / "daily.xml", [retitled])
    poll(FeedConfig("wire", feed_server.url("wire.xml"), interval=60))
    clock.advance(minutes=3)
    poll(FeedConfig("daily", feed_server.url("daily.xml"), interval=60))

    # Both articles hit troop-movements; the second outlet's copy joined the first one's
    # story and was stored, not alerted again.
    assert [r for r in deliveries(store) if r[0] == "troop-movements"] == [
        ("troop-movements", "chat", "pending")
    ]
    stories = store.stories()
    troop_story = next(s for s in stories if s.sources == 2)
    assert troop_story.articles == 2 and troop_story.outlets == (
        "wire.example",
        "daily.example",
    )
    assert len(stories) == 2  # and the bakery is a story of its own


def policy_poller(tmp_path: Path, store: Store, clock: Clock, policy: str) -> Poller:
    """A Poller with one rule, troop-movements, with this policy line; baseline on."""
    rules_dir = tmp_path / "policy-rules"
    rules_dir.mkdir()
    (rules_dir / "main.yaml").write_text(
        f"rules:\n  - name: troop-movements\n    any: [troops, soldiers]\n    {policy}\n",
        encoding="utf-8",
    )
    ruleset = load_rules(rules_dir)
    assert ruleset.errors == ()
    poll = Poller(store, Matcher(ruleset.rules), clock)
    poll.settings = {"baseline": True}
    return poll


@pytest.mark.parametrize(
    "policy, alerts",
    [
        # The copy brings the story its second source: the alert says so, and the
        # follow-up at 2 is passed over (clustered one by one, both would go out).
        ("follow_up: [2]", [("troop-movements", 0)]),
        # The second source the rule waits for is already there: alerted at once.
        ("min_sources: 2", [("troop-movements", 0)]),
    ],
)
def test_a_backlog_copy_is_clustered_before_an_established_feeds_article(
    policy: str,
    alerts: list[tuple[str, int]],
    tmp_path: Path,
    feed_dir: Path,
    feed_server: FeedServer,
    store: Store,
    clock: Clock,
) -> None:
    poll = policy_poller(tmp_path, store, clock, policy)
    feeds = {}
    for name in ("old", "new"):
        feeds[name] = FeedConfig(name, feed_server.url(f"{name}.xml"), interval=60)
    # An established feed (its first poll is behind it).
    write_rss(feed_dir / "old.xml", [BAKERY])
    poll(feeds["old"])
    # A new feed's first poll carries the troops story: its backlog waits for stories.
    write_rss(feed_dir / "new.xml", [TROOPS])
    assert poll(feeds["new"]).unclustered == 1
    assert store.pending_stories() >= 1
    # The established feed then carries the story too, from another outlet.
    clock.advance(300)
    copy = replace(TROOPS, link="https://other.example.net/troops", guid="old-troops")
    write_rss(feed_dir / "old.xml", [copy, BAKERY])
    result = poll(feeds["old"])
    assert result.hits == 1
    sent = """SELECT h.rule, d.step FROM deliveries d JOIN hits h ON h.id = d.hit_id
              ORDER BY d.id"""
    assert store.db.execute(sent).fetchall() == alerts  # with this poll, not later
    # What is left waiting (nothing) is clustered as the daemon would, after the poll.
    while store.cluster_pending(clock(), policies=poll.matcher.policies)[0]:
        pass
    assert store.db.execute(sent).fetchall() == alerts
    # Both copies in one story, of two sources.
    assert store.db.execute(
        """SELECT DISTINCT s.articles, s.sources FROM articles a
           JOIN stories s ON s.id = a.story_id WHERE a.title = ?""",
        [TROOPS.title],
    ).fetchall() == [(2, 2)]


def test_an_established_poll_releases_the_alert_a_waiting_copy_corroborates(
    tmp_path: Path, feed_dir: Path, feed_server: FeedServer, store: Store, clock: Clock
) -> None:
    poll = policy_poller(tmp_path, store, clock, "min_sources: 2")
    feeds = {n: FeedConfig(n, feed_server.url(f"{n}.xml"), interval=60) for n in "xyn"}
    for name in ("x", "y"):  # two established feeds
        write_rss(feed_dir / f"{name}.xml", [BAKERY])
        poll(feeds[name])
    clock.advance(300)
    write_rss(feed_dir / "x.xml", [TROOPS, BAKERY])
    assert poll(feeds["x"]).hits == 1  # held: one source so far
    assert deliveries(store) == []
    # A new feed's first poll carries a copy from another outlet: it waits for its story.
    copy = replace(TROOPS, link="https://other.example.net/troops", guid="n-troops")
    write_rss(feed_dir / "n.xml", [copy])
    assert poll(feeds["n"]).unclustered == 1
    # The next poll of an established feed clusters it first: the held alert goes out
    # with that poll (the daemon wakes its delivery loops for it), though it had no hits.
    clock.advance(300)
    write_rss(feed_dir / "y.xml", [EMBARGO, BAKERY])
    result = poll(feeds["y"])
    assert (result.hits, result.released) == (0, 1)
    assert deliveries(store) == [("troop-movements", "chat", "pending")]


def test_a_backlog_that_cannot_be_clustered_never_stops_an_established_poll(
    wire: Callable[..., FeedConfig],
    poll: Poller,
    store: Store,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = wire([BAKERY])
    poll(feed)
    # A waiting row that is not what Store.save writes (damaged by hand, say).
    store.save(
        [(Article(feed="other", uid="x", title="t", link="", summary="s"), [])],
        clock(),
        baseline=True,
        cluster_later=True,
    )
    store.db.execute("UPDATE story_pending SET words = x'010203'")
    store.db.conn.commit()
    clock.advance(300)
    wire([TROOPS, BAKERY])
    with caplog.at_level(logging.WARNING, logger="monitor.pipeline"):
        result = poll(feed)
    assert (result.outcome, result.new_articles, result.hits) == ("ok", 1, 1)
    assert "stories_cluster_bug" in caplog.text
    assert ("troop-movements", "chat", "pending") in deliveries(store)
