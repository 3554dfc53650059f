"""The real daemon as a subprocess (`python -m monitor run`), against the FeedServer and a
webhook receiver on 127.0.0.1; then the CLI commands that read its database."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DaemonProcess,
    Item,
    Project,
    Webhook,
    child_env,
    command,
    rss,
    wait_for,
    wire_project,
    write_rss,
)

from monitor.devserver import FeedServer

RULES = """\
rules:
  - name: troop-movements
    severity: urgent
    any: [troops, soldiers]
    all: [[border, frontier]]
  - name: sanctions
    any: [sanctions, embargo]
"""
ITEMS = [
    Item(
        title="Troops mass near the border",
        description="Thousands of soldiers were seen moving toward the frontier.",
        link="https://news.example.org/world/troops-border",
        guid="wire-0001",
    ),
    Item(
        title="EU agrees new sanctions on Russian oil",
        description="Ministers agreed a package of sanctions and an embargo on crude.",
        link="https://news.example.org/europe/sanctions",
        guid="wire-0002",
    ),
    Item(
        title="Local bakery wins national award",
        description="The sourdough impressed the judges.",
        link="https://news.example.org/local/bakery",
        guid="wire-0003",
    ),
]
TITLES = {
    "[troop-movements] Troops mass near the border",
    "[sanctions] EU agrees new sanctions on Russian oil",
}


def query(database: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database with a separate read-only connection (WAL allows it)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn.execute(sql, list(params)).fetchall()


def cli(
    args: Sequence[str], config: Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m monitor ARGS... --config CONFIG` in a child process, as a user runs it."""
    return subprocess.run(
        [*args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=cwd,
    )


def delivery_states(database: Path) -> list[tuple[str, str, str]]:
    if not database.exists():
        return []
    return query(
        database,
        """SELECT h.rule, d.channel, d.status FROM deliveries d JOIN hits h ON h.id = d.hit_id
           ORDER BY h.rule, d.channel""",
    )


@pytest.fixture
def daemon_project(
    make_project: Callable[..., Project], feed_dir: Path, feed_server: FeedServer, webhook: Webhook
) -> Project:
    write_rss(feed_dir / "wire.xml", ITEMS)
    return make_project(
        feeds=[{"name": "wire", "url": feed_server.url("wire.xml"), "interval": "1s"}],
        channels={"chat": webhook.url("hook"), "term": "console://"},
        default_channels=["chat", "term"],
        rules=RULES,
        fetch={"timeout": "5s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]},
        delivery={"interval": "200ms", "retry_min": "1s", "retry_max": "5s"},
    )


def test_daemon_polls_alerts_stops_and_restarts_without_repeating_alerts(
    daemon_project: Project,
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    start_daemon: Callable[[Project], DaemonProcess],
) -> None:
    db = daemon_project.database
    daemon = start_daemon(daemon_project)

    # Both hits reach the webhook and the terminal...
    wait_for(lambda: len(webhook.bodies) >= 2, message="two webhook alerts")
    assert {b["title"] for b in webhook.bodies} == TITLES
    wait_for(
        lambda: all(f"=== ALERT {t}" in daemon.stdout() for t in TITLES),
        message="both alerts printed by console://",
    )
    # ...and are marked sent on both channels.
    expected = [
        ("sanctions", "chat", "sent"),
        ("sanctions", "term", "sent"),
        ("troop-movements", "chat", "sent"),
        ("troop-movements", "term", "sent"),
    ]
    wait_for(lambda: delivery_states(db) == expected, message="all four deliveries sent")
    # The next poll sends the validators and gets a 304.
    wait_for(lambda: feed_server.not_modified["wire.xml"] >= 1, message="a 304 poll")
    # The daemon adds what it stored to the search index by itself, within seconds.
    wait_for(
        lambda: query(db, "SELECT indexed FROM fts_state") == [(3,)],
        message="the three articles in the search index",
    )
    found = query(db, "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'sanction OR troop'")
    assert len(found) == 2

    assert daemon.terminate() == 0, daemon.stderr()
    assert "Traceback" not in daemon.stderr(), daemon.stderr()
    assert "stopped" in daemon.stderr()
    stdout = daemon.stdout()
    assert "Matched:   troops, soldiers, border, frontier" in stdout
    assert "Link:      https://news.example.org/world/troops-border" in stdout

    hits = query(db, "SELECT h.rule, a.title FROM hits h JOIN articles a ON a.id = h.article_id")
    assert sorted(hits) == [
        ("sanctions", "EU agrees new sanctions on Russian oil"),
        ("troop-movements", "Troops mass near the border"),
    ]
    assert delivery_states(db) == expected
    assert query(db, "SELECT count(*) FROM articles") == [(3,)]
    [(outcome, errors)] = query(db, "SELECT last_outcome, consecutive_errors FROM feeds")
    assert (outcome, errors) == ("not-modified", 0)

    # Restart on the same database. The feed is re-rendered (same items, new bytes), so
    # the new process gets a full 200 first and must recognise every item as seen.
    write_rss(feed_dir / "wire.xml", ITEMS, comment="re-rendered")
    not_modified = feed_server.not_modified["wire.xml"]
    requests = feed_server.requests["wire.xml"]
    again = start_daemon(daemon_project)
    # A 304 after the restart means the 200 poll was stored completely (new ETag saved).
    wait_for(
        lambda: feed_server.not_modified["wire.xml"] > not_modified,
        message="a full poll then a 304 poll by the restarted daemon",
    )
    assert feed_server.requests["wire.xml"] >= requests + 2

    # `hits --json` reads the database while the daemon is running.
    listing = cli(command("hits", "--json"), daemon_project.config, daemon_project.root)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert {(r["rule"], r["title"]) for r in rows} == set(hits)
    for row in rows:
        assert row["feed"] == "wire"
        assert sorted(row["deliveries"].split()) == ["chat:sent", "term:sent"]
    troops = next(r for r in rows if r["rule"] == "troop-movements")
    assert troops["terms"] == ["troops", "soldiers", "border", "frontier"]
    assert troops["link"] == "https://news.example.org/world/troops-border"
    assert "soldiers were seen moving toward the frontier" in troops["snippet"]

    assert again.terminate() == 0, again.stderr()
    assert "Traceback" not in again.stderr(), again.stderr()
    assert "=== ALERT" not in again.stdout()
    assert len(webhook.bodies) == 2  # nothing was alerted twice
    assert {b["title"] for b in webhook.bodies} == TITLES
    assert query(db, "SELECT count(*) FROM hits") == [(2,)]
    assert delivery_states(db) == expected


BAD_RULES = """\
rules:
  - name: troop-movements
    any: [troops]
    channel: [chat]
  - name: empty-rule
    all: [border]
    any: []
"""


@pytest.fixture
def bad_project(make_project: Callable[..., Project], webhook: Webhook) -> Project:
    return make_project(
        feeds=[{"name": "wire", "url": "http://127.0.0.1:9/wire.xml", "interval": "1s"}],
        channels={"chat": webhook.url("hook")},
        default_channels=["chat"],
        rules={"good.yaml": RULES, "bad.yaml": BAD_RULES},
    )


def test_check_reports_rule_errors_with_file_and_line(bad_project: Project) -> None:
    script = Path(sys.executable).with_name("news-monitor")
    argv = [str(script)] if script.exists() else command()
    bad = bad_project.rules_dir / "bad.yaml"

    result = cli([*argv, "check"], bad_project.config)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{bad}:4:5: unknown key 'channel'" in result.stderr
    assert f"{bad}:7:5: `any` is empty" in result.stderr
    assert "2 error(s)." in result.stderr
    assert "good.yaml" not in result.stderr
    assert "OK" not in result.stdout


def test_check_accepts_a_good_config(bad_project: Project) -> None:
    (bad_project.rules_dir / "bad.yaml").unlink()

    result = cli(command("check"), bad_project.config)

    assert result.returncode == 0, result.stderr
    assert "OK: 1 feeds (1 enabled), 2 rules enabled, 1 channels." in result.stdout


def test_run_refuses_to_start_on_rule_errors(bad_project: Project, webhook: Webhook) -> None:
    result = cli(command("run"), bad_project.config, bad_project.root)

    assert result.returncode == 1
    assert "refusing to start" in result.stderr
    assert f"{bad_project.rules_dir / 'bad.yaml'}:4:5" in result.stderr
    assert not bad_project.database.exists()
    assert webhook.bodies == []


def test_rules_hot_reload_keeps_the_last_good_rules_and_picks_up_fixes(
    make_project: Callable[..., Project],
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    start_daemon: Callable[[Project], DaemonProcess],
) -> None:
    write_rss(feed_dir / "wire.xml", ITEMS[:1])
    project = make_project(
        feeds=[{"name": "wire", "url": feed_server.url("wire.xml"), "interval": "1s"}],
        channels={"chat": webhook.url("hook"), "ops": webhook.url("ops")},
        default_channels=["chat"],
        rules=RULES,
        fetch={"timeout": "5s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]},
        delivery={"interval": "200ms"},
        extra={"reload_interval": "200ms", "operator_channels": ["ops"]},
    )
    rule_file = project.rules_dir / "main.yaml"
    daemon = start_daemon(project)

    def titles(path: str = "/hook") -> list[str]:
        return [r.body["title"] for r in webhook.received if r.path == path]

    wait_for(lambda: "[troop-movements] Troops mass near the border" in titles())

    # A bad edit is refused with its location; the running rules stay.
    rule_file.write_text("rules:\n  - name: sanctions\n    any: []\n")
    wait_for(lambda: "rules_rejected" in daemon.stderr(), message="bad edit rejected")
    assert "main.yaml:3:5: `any` is empty" in daemon.stderr()
    # ...and the operator channel is told, once, with the location.
    wait_for(lambda: titles("/ops"), message="operator told about the rejected edit")
    [notice] = [r.body for r in webhook.received if r.path == "/ops"]
    assert "rules edit rejected" in notice["title"]
    assert "main.yaml:3:5" in json.loads(notice["message"])["notice"]
    write_rss(feed_dir / "wire.xml", ITEMS[:2])
    wait_for(
        lambda: "[sanctions] EU agrees new sanctions on Russian oil" in titles(),
        message="old rules still alert",
    )

    # The fix goes live: a new rule fires on the next new article.
    rule_file.write_text(RULES + "  - name: bakeries\n    any: [bakery]\n")
    wait_for(lambda: "added=bakeries" in daemon.stderr(), message="fixed rules reloaded")
    write_rss(feed_dir / "wire.xml", ITEMS)
    wait_for(
        lambda: "[bakeries] Local bakery wins national award" in titles(), message="new rule alerts"
    )

    # SIGHUP reloads at once, even with nothing changed.
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "rules_reloaded reason=SIGHUP" in daemon.stderr(), message="SIGHUP reload")
    assert daemon.terminate() == 0, daemon.stderr()
    # Nothing was alerted twice across the reloads.
    assert sorted(titles()) == sorted(set(titles())) and len(titles()) == 3
    assert len(titles("/ops")) == 1
    versions = query(project.database, "SELECT rule, active FROM rule_versions ORDER BY rule")
    assert ("bakeries", 1) in versions


def test_settings_reload_adds_and_removes_feeds_and_refuses_a_broken_edit(
    make_project: Callable[..., Project],
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    start_daemon: Callable[[Project], DaemonProcess],
) -> None:
    write_rss(feed_dir / "wire.xml", ITEMS[:1])
    write_rss(feed_dir / "second.xml", ITEMS[1:2])
    wire = {"name": "wire", "url": feed_server.url("wire.xml"), "interval": "1s"}
    second = {"name": "second", "url": feed_server.url("second.xml"), "interval": "1s"}
    settings: dict[str, Any] = {
        "channels": {"chat": webhook.url("hook")},
        "default_channels": ["chat"],
        "rules": RULES,
        "fetch": {"timeout": "5s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]},
        "delivery": {"interval": "200ms"},
        "extra": {"reload_interval": "200ms"},
    }
    project = make_project(feeds=[wire], **settings)
    daemon = start_daemon(project)

    def titles() -> list[str]:
        return [b["title"] for b in webhook.bodies]

    wait_for(lambda: "[troop-movements] Troops mass near the border" in titles())
    # A feed added to the file is polled without a restart (the file is watched).
    make_project(feeds=[wire, second], **settings)
    wait_for(lambda: "added=second" in daemon.stderr(), message="settings reloaded")
    wait_for(lambda: "[sanctions] EU agrees new sanctions on Russian oil" in titles())

    # A broken edit is refused with its location; the running settings stay.
    text = project.config.read_text()
    project.config.write_text(text.replace("interval: 1s", "interval: often", 1))
    wait_for(lambda: "settings_rejected" in daemon.stderr(), message="bad settings refused")
    assert "config.yaml:" in daemon.stderr() and "interval" in daemon.stderr()

    # Removing a feed stops its polls; SIGHUP reloads at once.
    make_project(feeds=[wire], **settings)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "removed=second" in daemon.stderr(), message="feed removed")
    assert daemon.terminate() == 0, daemon.stderr()
    assert sorted(titles()) == sorted(set(titles()))


class _Comeback:
    """A feed that answers 410 Gone until ``back`` is set, then serves ``body``."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.back = False
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests += 1
                if not outer.back:
                    self.send_error(HTTPStatus.GONE)
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_feed_stopped_by_410_is_polled_again_after_feeds_resume(
    make_project: Callable[..., Project],
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    start_daemon: Callable[[Project], DaemonProcess],
) -> None:
    write_rss(feed_dir / "wire.xml", ITEMS[2:])
    comeback = _Comeback(rss(ITEMS[:1]).encode())
    try:
        project = make_project(
            feeds=[
                {"name": "wire", "url": feed_server.url("wire.xml"), "interval": "1s"},
                {"name": "back", "url": comeback.url, "interval": "1s"},
            ],
            channels={"chat": webhook.url("hook")},
            default_channels=["chat"],
            rules=RULES,
            fetch={"timeout": "5s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]},
            delivery={"interval": "200ms"},
            extra={"reload_interval": "200ms"},
        )
        daemon = start_daemon(project)
        wait_for(lambda: "feed_stopped feed=back" in daemon.stderr(), message="feed stopped")
        assert "news-monitor feeds resume back" in daemon.stderr()
        # Stopped means stopped: the other feed goes on being polled, this one is not.
        asked = comeback.requests
        polled = feed_server.requests["wire.xml"]
        wait_for(lambda: feed_server.requests["wire.xml"] >= polled + 3, message="wire polled")
        assert comeback.requests == asked == 1

        comeback.back = True
        resumed = cli(command("feeds", "resume", "back"), project.config)
        assert resumed.returncode == 0, resumed.stderr
        assert "Feed 'back' is already enabled" not in resumed.stdout
        assert "Cleared the stop of feed 'back' (it had answered HTTP 410 Gone)" in resumed.stdout
        # Within reload_interval, without a restart or a settings change:
        wait_for(lambda: "feed_resumed feed=back" in daemon.stderr(), message="feed resumed")
        wait_for(
            lambda: (
                "[troop-movements] Troops mass near the border"
                in [b["title"] for b in webhook.bodies]
            ),
            message="the resumed feed's alert",
        )
        listing = cli(command("feeds", "--json"), project.config)
        back = next(f for f in json.loads(listing.stdout) if f["name"] == "back")
        assert back["health"] == "ok" and back["stopped_because"] is None, back
        # Resuming a feed that is not stopped changes nothing and says so.
        again = cli(command("feeds", "resume", "back"), project.config)
        assert again.returncode == 0 and "already enabled" in again.stdout, again.stdout
        assert daemon.terminate() == 0, daemon.stderr()
    finally:
        comeback.close()


def test_a_poll_still_hanging_when_the_grace_ends_is_abandoned_quietly(
    make_project: Callable[..., Project],
    webhook: Webhook,
    start_daemon: Callable[[Project], DaemonProcess],
) -> None:
    """SIGTERM while a feed's server has not answered: the stop waits out its grace,
    abandons the poll (not committed: polled again at the next start), says so in one
    line, and exits 0 (no failed-job traceback)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        port = silent.getsockname()[1]
        project = make_project(
            feeds=[{"name": "hang", "url": f"http://127.0.0.1:{port}/feed.xml"}],
            channels={"chat": webhook.url("hook")},
            default_channels=["chat"],
            rules=RULES,
            fetch={"timeout": "60s", "allow_private": ["127.0.0.0/8"]},
        )
        daemon = start_daemon(project)
        wait_for(lambda: "started feeds=1" in daemon.stderr(), message="daemon started")
        silent.settimeout(30)
        connection, _ = silent.accept()  # the poll is in flight
        with connection:
            assert daemon.terminate(timeout=30) == 0, daemon.stderr()
    log = daemon.stderr()
    assert "waiting_for_polls count=1" in log
    assert "poll_abandoned feed=hang" in log
    assert "Traceback" not in log and "CancelledError" not in log, log


def test_a_first_polls_backlog_gets_its_stories_after_the_poll_and_after_a_restart(
    make_project: Callable[..., Project],
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    start_daemon: Callable[[Project], DaemonProcess],
) -> None:
    from datetime import UTC, datetime

    from monitor.models import Article
    from monitor.store import Store

    project = wire_project(
        make_project, feed_dir, feed_server, webhook, ITEMS, RULES, baseline=True
    )
    db = project.database
    # A backlog an earlier run stored and stopped before clustering.
    store = Store(db)
    left = Article(
        feed="old",
        uid="old-1",
        title="Ceasefire talks resume in Geneva",
        link="https://other.example.net/geneva",
        summary="Delegations from both sides met again in Geneva for a second round.",
    )
    store.save([(left, [])], datetime.now(UTC), baseline=True, cluster_later=True)
    assert store.pending_stories() == 1
    store.close()

    daemon = start_daemon(project)
    wait_for(lambda: feed_server.not_modified["wire.xml"] >= 1, message="a 304 poll")
    wait_for(
        lambda: (
            query(db, "SELECT count(*) FROM articles WHERE story_id IS NULL") == [(0,)]
            and query(db, "SELECT count(*) FROM articles") == [(4,)]
        ),
        message="every article in a story",
    )
    assert query(db, "SELECT count(*) FROM story_pending") == [(0,)]
    assert query(db, "SELECT count(*) FROM stories") == [(4,)]
    stats = cli(command("stats"), project.config, project.root)
    assert stats.returncode == 0, stats.stderr
    assert "stories    4\n" in stats.stdout
    assert daemon.terminate() == 0, daemon.stderr()
    assert "Traceback" not in daemon.stderr(), daemon.stderr()
    assert "stories_clustered articles=" in daemon.stderr()
    # The first poll was a baseline: stored and matched, nothing alerted.
    assert query(db, "SELECT count(*) FROM hits WHERE muted IS NOT NULL") == [(2,)]
    assert webhook.bodies == []
