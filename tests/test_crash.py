"""Crash safety of the outbox: the real daemon process (`python -m monitor run`) is killed
with SIGKILL at the worst moments and started again on the same SQLite file, against
real servers on 127.0.0.1 (feed server, webhook receivers). No alert may be lost; an
alert may be repeated only in the documented at-least-once window (sent, or in flight,
while its `sent` mark was not yet recorded).

* killed between storing hits and sending them (the channel answers 500, or refuses);
* killed in the middle of a send (the receiver holds the request unanswered);
* killed in the middle of a poll (the feed server stalls half way through the body);
* several kill/restart cycles with new articles each time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from conftest import (
    Item,
    Project,
    Webhook,
    child_env,
    rss,
    wait_for,
    write_project,
    write_rss,
)

from monitor.devserver import FeedServer

T = TypeVar("T")

#: One rule; every article whose text says "alert" is a hit. Each hit is alerted on its
#: own (not once per story), so the counts below never depend on story clustering.
RULES = """\
rules:
  - name: wire-alert
    any: [alert]
    once_per_story: false
"""
FETCH = {"timeout": "10s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]}
#: Quick retries, so a healed channel is used again within about a second (the store
#: keeps whole seconds).
DELIVERY = {"interval": "100ms", "retry_min": "200ms", "retry_max": "500ms"}
#: Generous deadlines for waits that normally end within a second or two.
TIMEOUT = 30.0
STOP_DEADLINE = 30.0
#: Longest time a stalling server holds a request (a safety net; tests release sooner).
HOLD_LIMIT = 60.0


def hit_item(n: int) -> Item:
    """An article that matches `wire-alert` (the n-th of a test)."""
    return Item(
        title=f"Wire alert {n}",
        description=f"Alert number {n} from the test wire.",
        link=f"https://news.example.org/alerts/{n}",
        guid=f"alert-{n:04d}",
    )


def quiet_item(n: int) -> Item:
    """An article that matches no rule."""
    return Item(
        title=f"Weather report {n}",
        description="Mild and dry, light winds.",
        link=f"https://news.example.org/weather/{n}",
        guid=f"weather-{n:04d}",
    )


def hit_titles(items: Sequence[Item]) -> set[str]:
    """The titles of those of ``items`` that are hits."""
    return {i.title for i in items if i.guid and i.guid.startswith("alert-")}


# --- what the receivers got ---------------------------------------------------------------

#: A text alert ends with its outbox row: "Delivery:  #12" (then maybe " · key ...").
_DELIVERY_LINE = re.compile(r"^Delivery:?\s*#(\d+)\b", re.MULTILINE)


def alert_id(body: Any) -> int:
    """The delivery (outbox row) id of one alert as a json:// receiver got it.

    apprise's json:// payload is ``{"version", "title", "message", "type", ...}``; the
    alert is ``message``: a JSON object with the delivery ``id`` (and idempotency
    ``key``), or plain text ending with the "Delivery: #ID" line. The one place to adapt
    if the alert format changes.
    """
    assert isinstance(body, dict), f"not an apprise JSON payload: {body!r}"
    message = str(body.get("message", ""))
    try:
        alert = json.loads(message)
    except ValueError:
        alert = None
    if isinstance(alert, dict) and isinstance(alert.get("id"), int):
        return int(alert["id"])
    match = _DELIVERY_LINE.search(message)
    assert match is not None, f"no delivery id in the alert: {body!r}"
    return int(match.group(1))


def received(bodies: Sequence[Any]) -> Counter[int]:
    """How many times each delivery id reached the receiver."""
    return Counter(alert_id(b) for b in bodies)


# --- the database, read-only --------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    id: int
    title: str
    status: str
    attempts: int


def query(database: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database with a separate read-only connection (WAL allows it)."""
    if not database.exists():
        return []
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout = 5000")
        try:
            return conn.execute(sql, list(params)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # the daemon is still creating the schema
                return []
            raise


def outbox(database: Path) -> list[Delivery]:
    """Every hit's delivery, oldest first."""
    rows = query(
        database,
        """SELECT d.id, a.title, d.status, d.attempts FROM deliveries d
           JOIN hits h ON h.id = d.hit_id JOIN articles a ON a.id = h.article_id
           ORDER BY d.id""",
    )
    return [Delivery(*row) for row in rows]


def stored_but_unsent(database: Path, titles: set[str]) -> list[Delivery] | None:
    """The deliveries of ``titles`` once every one is stored, still pending, and has been
    tried and failed at least once (so the daemon is retrying); None until then."""
    rows = [d for d in outbox(database) if d.title in titles]
    if {d.title for d in rows} == titles and all(
        d.status == "pending" and d.attempts >= 1 for d in rows
    ):
        return rows
    return None


def all_sent(daemon: Daemon, count: int, got: Callable[[], Counter[int]]) -> list[Delivery]:
    """Wait until ``count`` deliveries are stored, each marked sent and received."""

    def done() -> list[Delivery] | None:
        rows = outbox(daemon.database)
        sent = len(rows) == count and all(d.status == "sent" for d in rows)
        return rows if sent and {d.id for d in rows} <= set(got()) else None

    return daemon.wait(done, f"{count} deliveries received and marked sent")


# --- the daemon process -------------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it just ended
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid: int) -> dict[int, str]:
    """The live processes below ``pid`` (parse workers, forkserver), by pid -> start time."""
    table = _process_table()
    found: dict[int, str] = {}
    parents = [pid]
    while parents:
        parent = parents.pop()
        for child, (ppid, state, started) in table.items():
            if ppid == parent and state != "Z" and child not in found:
                found[child] = started
                parents.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    """Those of ``processes`` (pid -> start time) that have not ended."""
    table = _process_table()
    return [
        pid
        for pid, started in processes.items()
        if pid in table and table[pid][2] == started and table[pid][1] != "Z"
    ]


class Daemon:
    """One `news-monitor run` process; its log (stderr) goes to a file."""

    def __init__(self, project: Project, log_path: Path) -> None:
        self.database = project.database
        self.log_path = log_path
        self._out: IO[bytes] = log_path.with_suffix(".out").open("wb")
        self._err: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(project.config)],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            cwd=project.root,
            env=child_env(),
        )
        #: Processes the daemon started, as last seen (to check they end with it).
        self.children: dict[int, str] = {}

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        """True while the process runs; fails the test at once, with the log, if not."""
        if self.proc.poll() is not None:
            pytest.fail(f"the daemon exited with status {self.proc.returncode}:\n{self.log()}")
        return True

    def wait(self, predicate: Callable[[], T], message: str) -> T:
        """:func:`wait_for` ``predicate``, as long as the daemon keeps running."""
        return wait_for(lambda: self.running() and predicate(), timeout=TIMEOUT, message=message)

    def kill(self) -> None:
        """SIGKILL: no handler runs, whatever is in progress is not committed. Its child
        processes (parse workers, forkserver) must not outlive it."""
        assert self.proc.poll() is None, f"the daemon had already exited:\n{self.log()}"
        self.children = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=STOP_DEADLINE) == -signal.SIGKILL
        wait_for(
            lambda: not still_running(self.children),
            timeout=TIMEOUT,
            message="the killed daemon's child processes to end",
        )

    def terminate(self) -> int:
        """SIGTERM, then the exit status; fails the test if it does not stop in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon did not exit within {STOP_DEADLINE}s of SIGTERM:\n{self.log()}")

    def close(self) -> None:
        """Make sure the process and its children are gone (only this test's own)."""
        try:
            if self.proc.poll() is None:
                self.children |= descendants(self.proc.pid)
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE)
            for pid in still_running(self.children):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self._out.close()
            self._err.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[Project], Daemon]]:
    started: list[Daemon] = []

    def start(project: Project) -> Daemon:
        daemon = Daemon(project, tmp_path / f"daemon{len(started) + 1}.log")
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.close()


def stop_cleanly(daemon: Daemon) -> None:
    assert daemon.terminate() == 0, daemon.log()
    log = daemon.log()
    assert "Traceback" not in log, log
    assert "stopped" in log, log


def project_for(root: Path, feed_url: str, channel_url: str) -> Project:
    """(Re)write the project's settings; the database stays where it is."""
    return write_project(
        root,
        feeds=[{"name": "wire", "url": feed_url, "interval": "1s"}],
        channels={"chat": channel_url},
        default_channels=["chat"],
        rules=RULES,
        fetch=FETCH,
        delivery=DELIVERY,
    )


# --- receivers that stall -----------------------------------------------------------------


class _Server:
    """A ThreadingHTTPServer on a free 127.0.0.1 port, served in a background thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class StallingWebhook:
    """Records every POSTed JSON body as it arrives and answers 200, except request
    number ``stall_at``: recorded, then held unanswered until :meth:`release`."""

    def __init__(self, stall_at: int) -> None:
        self.stall_at = stall_at
        self.lock = threading.Lock()
        self._bodies: list[Any] = []
        self.holding = threading.Event()
        self.released = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook._bodies.append(json.loads(raw))
                    number = len(hook._bodies)
                if number == hook.stall_at:
                    hook.holding.set()
                    hook.released.wait(HOLD_LIMIT)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the sender was killed meanwhile

        self.server = _Server(Handler)

    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.port}/hook"

    @property
    def bodies(self) -> list[Any]:
        with self.lock:
            return list(self._bodies)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.close()


class SlowFeed:
    """Serves one RSS document at /wire.xml. While stalling it sends the headers and half
    the body, then holds the rest until :meth:`release`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._content = b""
        self._stall = False
        self.stalled = threading.Event()
        self.released = threading.Event()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with feed.lock:
                    content, stall = feed._content, feed._stall
                half = len(content) // 2 if stall else len(content)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content[:half])
                    self.wfile.flush()
                    if stall:
                        feed.stalled.set()
                        feed.released.wait(HOLD_LIMIT)
                    self.wfile.write(content[half:])
                except OSError:
                    pass  # the reader was killed meanwhile

        self.server = _Server(Handler)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/wire.xml"

    def serve(self, items: Sequence[Item], *, stall: bool = False) -> None:
        """Serve these items from the next request on; both change at once."""
        with self.lock:
            self._content = rss(items).encode("utf-8")
            self._stall = stall

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.close()


@pytest.fixture
def stalling_webhook() -> Iterator[StallingWebhook]:
    hook = StallingWebhook(stall_at=2)
    try:
        yield hook
    finally:
        hook.close()


@pytest.fixture
def slow_feed() -> Iterator[SlowFeed]:
    feed = SlowFeed()
    try:
        yield feed
    finally:
        feed.close()


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["http-500", "refused"])
def test_killed_between_storing_hits_and_sending_them(
    outage: str,
    tmp_path: Path,
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    refused_port: int,
    start_daemon: Callable[[Project], Daemon],
) -> None:
    items = [hit_item(1), quiet_item(1), hit_item(2), hit_item(3)]
    titles = hit_titles(items)
    write_rss(feed_dir / "wire.xml", items)
    root, feed_url = tmp_path / "project", feed_server.url("wire.xml")
    if outage == "http-500":
        webhook.fail()
        project = project_for(root, feed_url, webhook.url())
    else:
        project = project_for(root, feed_url, f"json://127.0.0.1:{refused_port}/hook")
    db = project.database

    first = start_daemon(project)
    pending = first.wait(
        lambda: stored_but_unsent(db, titles),
        "three hits stored with pending, already retried deliveries",
    )
    first.kill()
    assert webhook.bodies == []
    assert len(outbox(db)) == 3

    webhook.fail(False)
    project = project_for(root, feed_url, webhook.url())
    second = start_daemon(project)
    rows = all_sent(second, 3, lambda: received(webhook.bodies))
    stop_cleanly(second)

    # Each alert arrived exactly once, for the rows stored before the kill.
    assert received(webhook.bodies) == Counter({d.id: 1 for d in pending})
    assert {d.title for d in rows} == titles
    assert {b["title"] for b in webhook.bodies} == {f"[wire-alert] {t}" for t in titles}
    assert query(db, "SELECT count(*) FROM articles") == [(4,)]
    assert query(db, "SELECT count(*) FROM hits") == [(3,)]


def second_alert_held(
    tmp_path: Path,
    feed_dir: Path,
    feed_server: FeedServer,
    stalling_webhook: StallingWebhook,
    start_daemon: Callable[[Project], Daemon],
    items: Sequence[Item],
) -> tuple[Project, Daemon]:
    """A daemon alerting ``items``: the first alert answered, the second reached the
    receiver and held unanswered."""
    write_rss(feed_dir / "wire.xml", items)
    project = project_for(tmp_path / "project", feed_server.url("wire.xml"), stalling_webhook.url())
    daemon = start_daemon(project)
    daemon.wait(stalling_webhook.holding.is_set, "the second alert to reach the receiver")
    return project, daemon


def test_killed_while_a_send_is_in_flight(
    tmp_path: Path,
    feed_dir: Path,
    feed_server: FeedServer,
    stalling_webhook: StallingWebhook,
    start_daemon: Callable[[Project], Daemon],
) -> None:
    items = [hit_item(n) for n in range(1, 5)]
    project, first = second_alert_held(
        tmp_path, feed_dir, feed_server, stalling_webhook, start_daemon, items
    )
    db = project.database
    sent_first, in_flight = (alert_id(b) for b in stalling_webhook.bodies)
    rows = {d.id: d for d in outbox(db)}
    assert len(rows) == 4
    # The window: the receiver has the second alert, the outbox does not know.
    first.wait(
        lambda: {d.id: d.status for d in outbox(db)}[sent_first] == "sent",
        "the first alert marked sent",
    )
    assert {d.id: d.status for d in outbox(db)}[in_flight] == "pending"
    first.kill()
    stalling_webhook.release()

    second = start_daemon(project)
    all_sent(second, 4, lambda: received(stalling_webhook.bodies))
    stop_cleanly(second)

    counts = received(stalling_webhook.bodies)
    assert set(counts) == set(rows)  # every alert arrived...
    assert counts[sent_first] == 1  # ...the one recorded as sent never again...
    repeated = {i: n for i, n in counts.items() if n > 1}
    assert set(repeated) <= {in_flight}  # ...and only the one in flight may be repeated,
    assert counts[in_flight] <= 2  # once.
    assert {b["title"] for b in stalling_webhook.bodies} == {
        f"[wire-alert] {i.title}" for i in items
    }


def test_killed_in_the_middle_of_a_poll(
    tmp_path: Path,
    slow_feed: SlowFeed,
    webhook: Webhook,
    start_daemon: Callable[[Project], Daemon],
) -> None:
    slow_feed.serve([hit_item(1), quiet_item(1)])
    project = project_for(tmp_path / "project", slow_feed.url(), webhook.url())
    db = project.database

    first = start_daemon(project)
    all_sent(first, 1, lambda: received(webhook.bodies))
    # The next poll finds two new hits, but the feed stalls half way through the body.
    slow_feed.serve(
        [hit_item(1), quiet_item(1), hit_item(2), quiet_item(2), hit_item(3)], stall=True
    )
    first.wait(slow_feed.stalled.is_set, "the poll to stall half way through the feed")
    first.kill()
    slow_feed.release()
    # Nothing of that poll was stored.
    assert query(db, "SELECT count(*) FROM articles") == [(2,)]
    assert len(outbox(db)) == 1

    slow_feed.serve([hit_item(1), quiet_item(1), hit_item(2), quiet_item(2), hit_item(3)])
    second = start_daemon(project)
    rows = all_sent(second, 3, lambda: received(webhook.bodies))
    stop_cleanly(second)

    assert received(webhook.bodies) == Counter({d.id: 1 for d in rows})
    assert sorted(b["title"] for b in webhook.bodies) == [
        f"[wire-alert] Wire alert {n}" for n in (1, 2, 3)
    ]
    assert query(db, "SELECT count(*) FROM articles") == [(5,)]
    assert query(db, "SELECT count(*) FROM hits") == [(3,)]


def test_repeated_kills_and_restarts_lose_and_repeat_nothing(
    tmp_path: Path,
    feed_dir: Path,
    feed_server: FeedServer,
    webhook: Webhook,
    start_daemon: Callable[[Project], Daemon],
) -> None:
    project = project_for(tmp_path / "project", feed_server.url("wire.xml"), webhook.url())
    db = project.database
    cycles = 3
    items: list[Item] = []
    daemon: Daemon | None = None
    for cycle in range(cycles):
        # The channel goes down and new articles come in: stored, not sent; a crash.
        webhook.fail()
        new = [hit_item(2 * cycle + 1), quiet_item(cycle), hit_item(2 * cycle + 2)]
        items += new
        write_rss(feed_dir / "wire.xml", items)
        daemon = daemon or start_daemon(project)  # the first process starts here
        daemon.wait(
            lambda new=new: stored_but_unsent(db, hit_titles(new)),
            f"cycle {cycle}: the new hits stored, their deliveries pending",
        )
        daemon.kill()
        # The channel is back: the next process sends what is pending, and only that.
        webhook.fail(False)
        daemon = start_daemon(project)
        all_sent(daemon, 2 * (cycle + 1), lambda: received(webhook.bodies))
    assert daemon is not None
    stop_cleanly(daemon)

    rows = outbox(db)
    assert len(rows) == 2 * cycles
    assert received(webhook.bodies) == Counter({d.id: 1 for d in rows})
    assert sorted(b["title"] for b in webhook.bodies) == sorted(
        f"[wire-alert] {t}" for t in hit_titles(items)
    )
    assert query(db, "SELECT count(*) FROM articles") == [(3 * cycles,)]


def test_stopped_while_a_send_is_in_flight_records_it_and_never_repeats_it(
    tmp_path: Path,
    feed_dir: Path,
    feed_server: FeedServer,
    stalling_webhook: StallingWebhook,
    start_daemon: Callable[[Project], Daemon],
) -> None:
    items = [hit_item(n) for n in range(1, 4)]
    project, first = second_alert_held(
        tmp_path, feed_dir, feed_server, stalling_webhook, start_daemon, items
    )
    db = project.database
    _, in_flight = (alert_id(b) for b in stalling_webhook.bodies)
    # SIGTERM while the receiver holds the second alert; it answers a moment later.
    first.proc.send_signal(signal.SIGTERM)
    first.wait(lambda: "stopping reason=SIGTERM" in first.log(), "the daemon to start stopping")
    stalling_webhook.release()
    assert first.proc.wait(timeout=STOP_DEADLINE) == 0
    states = {d.id: d.status for d in outbox(db)}
    assert states[in_flight] == "sent"  # the answered send was recorded before exiting
    assert list(states.values()).count("pending") == 1  # the third never started

    second = start_daemon(project)
    all_sent(second, 3, lambda: received(stalling_webhook.bodies))
    stop_cleanly(second)
    assert received(stalling_webhook.bodies) == {i: 1 for i in states}
