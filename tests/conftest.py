"""Shared fixtures for the integration tests: real servers on 127.0.0.1, never mocks.

* :func:`wait_for` polls a condition against a deadline (no blind sleeps in tests);
* ``feed_server``: :class:`monitor.devserver.FeedServer` over a temp directory;
* ``smtp_server``: an aiosmtpd SMTP server collecting parsed messages;
* ``webhook``: an HTTP server recording POSTed JSON, which can be told to fail;
* ``make_project``: writes a settings YAML and a rules directory;
* :func:`write_rss`: a small RSS 2.0 feed file builder;
* :class:`Clock`: an injectable ``now()`` for the library functions.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar
from xml.sax.saxutils import escape

import pytest
import yaml

# apprise imports the stdlib `imghdr` module (deprecated since 3.11) the first time it
# loads its plugins. With `filterwarnings = error` that DeprecationWarning would become an
# exception inside whichever test first builds a channel, so import it once here, with
# only that one warning silenced.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
    import imghdr  # noqa: F401

from aiosmtpd.controller import Controller

from monitor.devserver import FeedServer
from monitor.store import Store

T = TypeVar("T")


# --- waiting -----------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Fails the test with a clear message (what was awaited, for how long, and the last
    value seen) once ``timeout`` seconds have passed. The default is generous: a wait
    that takes a second on an idle machine can take many more beside other work, and a
    deadline only decides how long a failing test takes to say so.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


# --- tiers: the `process` marker ---------------------------------------------------------
#
# A test that starts a real process (the daemon, a subprocess, parse-pool workers) or a
# server (feeds, SMTP, webhooks, metrics) is marked `process`; `pytest -m "not process"`
# runs the rest, the fast inner loop. Tests using one of the fixtures below are marked at
# collection; a test that starts one by itself says so with `@pytest.mark.process`. A test
# left unmarked that listens on a socket or starts a process anyway fails, naming what it
# started, so the fast tier stays free of them.

#: Fixtures that start a server or a process (also when used through another fixture).
PROCESS_FIXTURES = frozenset(
    {
        "feed_server",  # FeedServer over feed_dir
        "smtp_server",  # aiosmtpd
        "webhook",  # the JSON receiver
        "start_daemon",  # `python -m monitor run` (also test_crash's own)
        "stalling_webhook",  # test_crash
        "slow_feed",  # test_crash
        "server",  # test_metrics: the metrics server
        "tripwire",  # test_parse: an HTTP server a parse must never reach
        "no_leaks",  # test_parse: worker processes of a ParsePool, checked to be gone
        "pool",  # test_parse: a ParsePool (uses no_leaks)
        "start_notified",  # test_systemd: the daemon under a notify socket
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


class _StartGuard:
    """While installed: socket listens and process starts are refused and noted."""

    def __init__(self) -> None:
        import multiprocessing.process

        self.started: list[str] = []
        self._patches = [
            (socket.socket, "listen", "a server (socket.listen)"),
            (subprocess.Popen, "_execute_child", "a subprocess"),
            (multiprocessing.process.BaseProcess, "start", "a worker process"),
        ]
        self._saved = [vars(owner).get(name) for owner, name, _ in self._patches]

    def _refuse(self, what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            self.started.append(what)
            pytest.fail(f"started {what} without the `process` marker")

        return refused

    def __enter__(self) -> _StartGuard:
        for owner, name, what in self._patches:
            setattr(owner, name, self._refuse(what))
        return self

    def __exit__(self, *exc: object) -> None:
        for (owner, name, _), saved in zip(self._patches, self._saved, strict=True):
            if saved is None:
                delattr(owner, name)  # inherited (socket.listen is _socket.socket's)
            else:
                setattr(owner, name, saved)


def _guarded(item: pytest.Item) -> Generator[None, object, object]:
    """The body of the runtest hook wrappers: a phase of an unmarked test runs guarded."""
    if item.get_closest_marker("process") is not None:
        return (yield)
    with _StartGuard() as guard:
        result = yield
    if guard.started:  # also what a thread started, where the failure may have been lost
        pytest.fail(
            f"{item.nodeid} started {', '.join(sorted(set(guard.started)))}: mark it "
            "@pytest.mark.process (or use a fixture of conftest.PROCESS_FIXTURES)",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


# --- clock -------------------------------------------------------------------------------


class Clock:
    """An injectable ``now()``: fixed until advanced. Whole seconds, as the store keeps."""

    def __init__(self, start: datetime = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        self.current += timedelta(seconds=seconds, **kwargs)
        return self.current


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real database in a fresh file."""
    store = Store(tmp_path / "var" / "news.db")
    try:
        yield store
    finally:
        store.close()


# --- ports -------------------------------------------------------------------------------


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections for the whole test.

    The socket is bound (so nobody else gets the port) but never listens, so a connect
    is refused at once instead of racing another process for a closed port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# --- feeds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One RSS item. ``guid``/``link`` None means the element is left out."""

    title: str
    description: str = ""
    link: str | None = None
    guid: str | None = None
    published: datetime | None = None


def rss(items: Sequence[Item], *, title: str = "Test wire", comment: str = "") -> str:
    """An RSS 2.0 document; ``comment`` changes the bytes (and so the ETag) only."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0">',
        "<channel>",
        f"<title>{escape(title)}</title>",
        "<link>https://news.example.org/</link>",
        "<description>Integration test feed</description>",
    ]
    if comment:
        parts.append(f"<!-- {escape(comment)} -->")
    for item in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(item.title)}</title>")
        if item.link is not None:
            parts.append(f"<link>{escape(item.link)}</link>")
        if item.guid is not None:
            parts.append(f'<guid isPermaLink="false">{escape(item.guid)}</guid>')
        if item.description:
            parts.append(f"<description>{escape(item.description)}</description>")
        if item.published is not None:
            parts.append(f"<pubDate>{format_datetime(item.published, usegmt=True)}</pubDate>")
        parts.append("</item>")
    parts += ["</channel>", "</rss>", ""]
    return "\n".join(parts)


def write_rss(path: Path, items: Sequence[Item], **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rss(items, **kwargs), encoding="utf-8")
    return path


@pytest.fixture
def feed_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "feeds"
    directory.mkdir()
    return directory


@pytest.fixture
def feed_server(feed_dir: Path) -> Iterator[FeedServer]:
    """The project's own static feed server over ``feed_dir``, on a free port."""
    server = FeedServer(feed_dir, poll_interval=0.02)  # quick teardown
    with server:
        yield server


# --- SMTP --------------------------------------------------------------------------------


class _FreePortController(Controller):
    """aiosmtpd's Controller connects to ``self.port`` to check the server is up, which
    fails for port 0; learn the port the OS picked before that check."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = int(self.server.sockets[0].getsockname()[1])
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpServer:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.controller: _FreePortController | None = None
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self._messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    def start(self) -> None:
        """Start (again): the same port when restarting, so channel URLs stay valid."""
        assert self.controller is None
        self.controller = _FreePortController(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.port = self.controller.port

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def url(self, to: str = "desk@example.org", sender: str = "monitor@example.org") -> str:
        """apprise URL for this server: plain SMTP (mode=insecure is mailto's default)."""
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- webhook -----------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook:
    """Records POSTed JSON bodies; answers 500 while ``failing`` is true."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread
    failing: bool = False
    received: list[Request] = field(default_factory=list)
    rejected: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, path: str = "hook", userinfo: str = "") -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"json://{auth}127.0.0.1:{self.port}/{path}"

    def fail(self, failing: bool = True) -> None:
        with self.lock:
            self.failing = failing

    @property
    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.received]

    def counts(self) -> tuple[int, int]:
        """(accepted, rejected) requests so far."""
        with self.lock:
            return len(self.received), len(self.rejected)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook: Webhook

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = Request(self.path, dict(self.headers.items()), body)
            with hook.lock:
                failing = hook.failing
                (hook.rejected if failing else hook.received).append(request)
            status = 500 if failing else 200
            payload = b'{"ok": false}' if failing else b'{"ok": true}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="webhook", daemon=True
    )
    hook = Webhook(httpd, thread)
    thread.start()
    try:
        yield hook
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- settings and rules ------------------------------------------------------------------

RULES = """\
rules:
  - name: troop-movements
    description: Troops massing or moving near a border
    severity: urgent
    any: [troops, soldiers]
    all: [[border, frontier]]
    none: [border collie]
  - name: sanctions
    any: [sanctions, embargo]
    channels: [mail, chat]
"""


@dataclass(frozen=True)
class Project:
    root: Path
    config: Path
    database: Path
    rules_dir: Path


def write_project(
    root: Path,
    *,
    feeds: Sequence[Mapping[str, Any]] = (),
    channels: Mapping[str, str] | None = None,
    default_channels: Sequence[str] = (),
    rules: Mapping[str, str] | str = RULES,
    fetch: Mapping[str, Any] | None = None,
    delivery: Mapping[str, Any] | None = None,
    database: str = "var/news.db",
    baseline: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Project:
    """Write ``root/config.yaml`` and ``root/rules/*.yaml``; rule files are written verbatim
    (a str is the single file ``rules/main.yaml``) so tests control their line numbers.

    ``baseline`` is off unless asked for: most tests want the first poll's alerts.
    ``extra``: more top-level settings (operator_channels, stories...)."""
    root.mkdir(parents=True, exist_ok=True)
    rules_dir = root / "rules"
    rules_dir.mkdir(exist_ok=True)
    files = {"main.yaml": rules} if isinstance(rules, str) else dict(rules)
    for name, text in files.items():
        (rules_dir / name).write_text(text, encoding="utf-8")
    settings: dict[str, Any] = {
        "database": database,
        "rules_dir": "rules",
        "feeds": [dict(f) for f in feeds],
        "channels": dict(channels or {}),
        "default_channels": list(default_channels),
    }
    if fetch is not None:
        settings["fetch"] = dict(fetch)
    settings["delivery"] = {"baseline": baseline, **dict(delivery or {})}
    settings.update(extra or {})
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return Project(root, config, root / database, rules_dir)


def wire_project(
    make_project: Callable[..., Project],
    feed_dir: Path,
    feed_server: Any,
    webhook: Webhook,
    items: Sequence[Item],
    rules: str,
    **extra: Any,
) -> Project:
    """A project polling one feed, ``wire.xml`` of ``items`` on the FeedServer, every
    second, alerting ``rules`` to the webhook (``extra``: more write_project settings)."""
    write_rss(feed_dir / "wire.xml", items)
    return make_project(
        feeds=[{"name": "wire", "url": feed_server.url("wire.xml"), "interval": "1s"}],
        channels={"chat": webhook.url("hook")},
        default_channels=["chat"],
        rules=rules,
        fetch={"timeout": "5s", "jitter": "0s", "allow_private": ["127.0.0.0/8"]},
        delivery={"interval": "200ms"},
        **extra,
    )


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    """``make_project(feeds=[...], channels={...}, ...)`` -> a Project under tmp_path."""

    def make(**kwargs: Any) -> Project:
        return write_project(tmp_path / "project", **kwargs)

    return make


# --- the real daemon process -------------------------------------------------------------

STOP_DEADLINE = 30.0


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a daemon or CLI process of a test: no settings file from the
    caller's environment, no systemd variables unless given, unbuffered output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NEWS_MONITOR_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: tuple[IO[bytes], IO[bytes]]

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = STOP_DEADLINE) -> int:
        """SIGTERM, then the exit status; fails the test if it does not stop in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon did not exit within {timeout}s of SIGTERM:\n{self.stderr()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # only this test's own child, by its Popen handle
            self.proc.wait(timeout=STOP_DEADLINE)
        for f in self.files:
            f.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``start_daemon(project, **env)``: the real `python -m monitor run` on the project,
    its output in files; killed at the end of the test if still running."""
    started: list[DaemonProcess] = []

    def start(project: Project, **env: str) -> DaemonProcess:
        n = len(started) + 1
        out_path, err_path = tmp_path / f"daemon{n}.out", tmp_path / f"daemon{n}.err"
        out, err = out_path.open("wb"), err_path.open("wb")
        proc = subprocess.Popen(
            command("run", "--config", str(project.config)),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=project.root,
            env=child_env(**env),
        )
        daemon = DaemonProcess(proc, out_path, err_path, (out, err))
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()
