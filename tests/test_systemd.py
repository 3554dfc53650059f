"""The service integration: the sd_notify protocol against real Unix datagram sockets, the
unit file (read here and by systemd-analyze), `make install` into a temporary root, and the
real daemon process reporting READY/WATCHDOG/RELOADING/STOPPING to a notify socket."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    STOP_DEADLINE,
    DaemonProcess,
    Item,
    Project,
    Webhook,
    wire_project,
)

from monitor import systemd
from monitor.devserver import FeedServer

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "news-monitor.service"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the notify protocol is Linux-only (SO_PASSCRED)"
)


# --- a stand-in for systemd's notify socket ----------------------------------------------


@dataclass(frozen=True)
class Message:
    """One datagram: who sent it (from the kernel's SCM_CREDENTIALS) and what it said."""

    pid: int
    raw: bytes

    @property
    def states(self) -> dict[str, str]:
        lines = self.raw.decode("utf-8").split("\n")
        return dict(line.partition("=")[::2] for line in lines if line)


class NotifySocket:
    """An AF_UNIX datagram socket like PID 1's: every datagram with its sender's PID."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.received: list[Message] = []

    def receive(self, timeout: float) -> Message | None:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(
                4096, socket.CMSG_SPACE(struct.calcsize("3i"))
            )
        except TimeoutError:
            return None
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
        message = Message(pid, data)
        self.received.append(message)
        return message

    def wait_for(
        self, predicate: Callable[[Message], bool], what: str, timeout: float = 30.0
    ) -> Message:
        """The next datagram for which ``predicate`` holds (earlier ones are kept in
        ``received``); fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and predicate(message):
                return message
        seen = [m.raw for m in self.received]
        pytest.fail(f"timed out after {timeout:g}s waiting for {what} (received: {seen!r})")

    def listen(self, seconds: float) -> None:
        """Receive whatever comes for ``seconds`` (to show that something does not)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.receive(left)

    def close(self) -> None:
        self.sock.close()


def short_socket_path(tmp_path: Path) -> tuple[Path, Path | None]:
    """A socket path in tmp_path, or in a short temporary directory (returned, to be
    removed) when tmp_path is too long for sun_path (108 bytes)."""
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) < 100:
        return path, None
    directory = Path(tempfile.mkdtemp(prefix="nm-"))
    return directory / "notify.sock", directory


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[Path]:
    path, extra = short_socket_path(tmp_path)
    yield path
    if extra is not None:
        shutil.rmtree(extra, ignore_errors=True)


@pytest.fixture
def notify_socket(notify_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """A socket bound in tmp_path, named by $NOTIFY_SOCKET for this process."""
    receiver = NotifySocket(str(notify_path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    yield receiver
    receiver.close()


# --- notify() ----------------------------------------------------------------------------


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert systemd.notify("READY=1") is False
    assert systemd.reloading() is False
    asyncio.run(systemd.watchdog_ping())  # no error either


def test_notify_sends_one_datagram_from_this_process(notify_socket: NotifySocket) -> None:
    assert systemd.notify("READY=1", "STATUS=polling 3 feeds") is True

    message = notify_socket.receive(timeout=5)
    assert message is not None
    assert message.raw == b"READY=1\nSTATUS=polling 3 feeds"
    assert message.states == {"READY": "1", "STATUS": "polling 3 feeds"}
    assert message.pid == os.getpid()


def test_notify_to_the_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"news-monitor-test-{uuid.uuid4().hex}"
    receiver = NotifySocket("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert systemd.notify("WATCHDOG=1") is True

        message = receiver.receive(timeout=5)
        assert message is not None
        assert message.raw == b"WATCHDOG=1"
        assert message.pid == os.getpid()
    finally:
        receiver.close()


def test_nothing_to_say_sends_nothing(notify_socket: NotifySocket) -> None:
    assert systemd.notify() is False
    assert notify_socket.receive(timeout=0.05) is None


@pytest.mark.parametrize("target", ["missing.sock", "vsock:2:1234"])
def test_a_send_error_is_logged_at_debug_and_not_raised(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    address = str(tmp_path / target) if target.endswith(".sock") else target
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    caplog.set_level(logging.DEBUG, logger="monitor.systemd")

    assert systemd.notify("READY=1") is False

    [record] = [r for r in caplog.records if r.name == "monitor.systemd"]
    assert record.levelno == logging.DEBUG
    assert address in record.getMessage()


def test_a_socket_nobody_reads_does_not_hold_up_the_caller(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(systemd, "SEND_TIMEOUT", 0.05)
    # The receiver's queue is short (net.unix.max_dgram_qlen, 10 by default): fill it.
    results = []
    for _ in range(10_000):
        started = time.monotonic()
        results.append(systemd.notify("WATCHDOG=1"))
        if not results[-1]:
            break
    assert results[-1] is False, "the queue never filled"
    assert time.monotonic() - started < 1.0
    assert notify_socket.receive(timeout=1) is not None  # what was queued arrives


def test_reloading_says_when_by_the_monotonic_clock(notify_socket: NotifySocket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    message = notify_socket.receive(timeout=5)
    assert message is not None
    assert message.raw.startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert before <= int(message.states["MONOTONIC_USEC"]) <= after


def test_a_start_that_upgrades_the_database_asks_for_more_time(
    notify_socket: NotifySocket, tmp_path: Path
) -> None:
    import sqlite_utils

    from monitor.daemon.process import UPGRADE_TIMEOUT, announce_upgrade
    from monitor.store import Store
    from monitor.store.migrations import migrations

    path = tmp_path / "news.db"
    assert announce_upgrade(path) is False  # a new database: nothing to upgrade
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="0010_story_postings")  # as an older release left it
    db.conn.close()
    assert announce_upgrade(path) is True
    message = notify_socket.receive(timeout=5)
    assert message is not None
    assert message.states["EXTEND_TIMEOUT_USEC"] == str(int(UPGRADE_TIMEOUT * 1_000_000))
    assert message.states["STATUS"] == "upgrading the database"
    Store(path).close()
    assert announce_upgrade(path) is False
    assert notify_socket.receive(timeout=0.05) is None  # sent synchronously, if at all


def test_status_is_one_line() -> None:
    assert systemd.status("polling 3 feeds") == "STATUS=polling 3 feeds"
    assert systemd.status("rules rejected:\n  2 errors") == "STATUS=rules rejected: 2 errors"


def test_the_watchdog_ping_runs_on_the_event_loop(notify_socket: NotifySocket) -> None:
    # A coroutine function: APScheduler's asyncio scheduler runs it on the loop itself.
    assert asyncio.iscoroutinefunction(systemd.watchdog_ping)

    asyncio.run(systemd.watchdog_ping())

    message = notify_socket.receive(timeout=5)
    assert message is not None
    assert message.raw == b"WATCHDOG=1"


# --- watchdog_interval() -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("1000000", None, 0.5),
        ("60000000", "self", 30.0),
        ("60000000", "parent", None),  # inherited from the process systemd started
        ("60000000", "", None),
        ("60000000", "12ab", None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("sixty", None, None),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "parent": str(os.getppid())}.get(value, value)
            monkeypatch.setenv(name, value)

    assert systemd.watchdog_interval() == expected


# --- the unit file -----------------------------------------------------------------------


@dataclass(frozen=True)
class Directive:
    section: str
    key: str
    value: str
    line: int  # index into the file's lines


def unit_lines() -> list[str]:
    return UNIT.read_text(encoding="utf-8").splitlines()


def directives() -> list[Directive]:
    section = ""
    out = []
    for index, line in enumerate(unit_lines()):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        assert not stripped.endswith("\\"), f"line {index + 1}: keep directives on one line"
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        out.append(Directive(section, key, value, index))
    return out


def service(key: str) -> list[str]:
    return [d.value for d in directives() if d.section == "Service" and d.key == key]


#: What counts as hardening: sandboxing, privilege and system call directives.
HARDENING = re.compile(
    r"^(Protect\w+|Private\w+|Restrict\w+|SystemCall\w+|\w*Capabilit\w+|NoNewPrivileges"
    r"|LockPersonality|MemoryDenyWriteExecute|RemoveIPC|UMask|ProcSubset|KeyringMode"
    r"|Inaccessible\w+|ReadOnly\w+|ReadWrite\w+|NoExec\w+|Device\w+|IPAddress\w+"
    r"|SocketBind\w+|DynamicUser|SupplementaryGroups)$"
)


def test_unit_is_a_notify_service_with_watchdog_check_and_reload() -> None:
    assert service("Type") == ["notify"]
    assert service("NotifyAccess") == ["main"]
    [watchdog] = service("WatchdogSec")
    assert 10 <= int(watchdog) <= 300
    [start] = service("ExecStart")
    [pre] = service("ExecStartPre")
    binary = start.removesuffix(" run")
    assert start == f"{binary} run" and pre == f"{binary} check"
    assert service("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert service("Restart") == ["on-failure"]
    assert service("User") == ["news-monitor"]
    assert service("StateDirectory") == ["news-monitor"]
    assert service("ConfigurationDirectory") == ["news-monitor"]
    assert service("Environment").count("NEWS_MONITOR_CONFIG=/etc/news-monitor/config.yaml") == 1
    # The path `make install` puts the venv at.
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    prefix = re.search(r"^PREFIX \?= (\S+)$", makefile, re.MULTILINE)
    assert prefix is not None
    assert binary == f"{prefix.group(1)}/bin/news-monitor"


def test_every_hardening_line_is_preceded_by_a_comment() -> None:
    lines = unit_lines()
    hardening = [d for d in directives() if HARDENING.match(d.key)]
    assert len(hardening) >= 20  # the set the score below depends on
    for directive in hardening:
        before = lines[directive.line - 1].strip()
        assert before.startswith("#"), f"no comment above {lines[directive.line]!r}"


@pytest.mark.process
def test_unit_parses_without_warnings() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are reported with ", ignoring"; a missing ExecStart=
    # binary (installed by `make install`) is not an error of the unit.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if re.search(r"ignoring|Unknown|Failed to parse|Invalid", line)
    ]
    assert problems == []


@pytest.mark.process
def test_unit_security_exposure_is_at_most_2() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


# --- make install ------------------------------------------------------------------------


def make_install(root: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        [make, "--no-print-directory", "-C", str(ROOT), "install", f"DESTDIR={root}", *variables],
        capture_output=True,
        text=True,
        timeout=120,
    )


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.process
def test_make_install_into_destdir_builds_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    had_user = user_exists("news-monitor")

    result = make_install(root, "INSTALL_VENV=0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemctl daemon-reload && systemctl enable --now news-monitor" in result.stdout
    etc = root / "etc" / "news-monitor"
    unit = root / "etc" / "systemd" / "system" / "news-monitor.service"
    assert unit.read_text() == UNIT.read_text()  # default PREFIX: unchanged
    sysusers = root / "etc" / "sysusers.d" / "news-monitor.conf"
    assert sysusers.read_text() == (ROOT / "systemd" / "news-monitor.sysusers").read_text()
    assert (etc / "config.yaml").read_text() == (ROOT / "systemd" / "config.yaml").read_text()
    rules = sorted(p.name for p in (ROOT / "rules").glob("*.yaml"))
    assert sorted(p.name for p in (etc / "rules").iterdir()) == rules
    assert (etc.stat().st_mode & 0o777) == 0o750
    assert ((etc / "config.yaml").stat().st_mode & 0o777) == 0o640
    assert ((etc / "credentials").stat().st_mode & 0o777) == 0o700
    link = root / "usr" / "local" / "bin" / "news-monitor"
    assert os.readlink(link) == "/opt/news-monitor/bin/news-monitor"
    assert not (root / "opt").exists()  # INSTALL_VENV=0
    assert user_exists("news-monitor") == had_user  # nothing outside DESTDIR

    # The installed settings pass `check` (rules found relative to the file).
    check = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "--config", str(etc / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "NEWS_MONITOR_CONFIG"},
    )
    assert check.returncode == 0, check.stderr
    assert f"{len(rules)} rules enabled" in check.stdout

    # Again, after local edits: the config and the rules are kept, the unit is replaced.
    (etc / "config.yaml").write_text("# edited\n")
    (etc / "rules" / rules[0]).unlink()
    unit.write_text("stale\n")

    again = make_install(root, "INSTALL_VENV=0")

    assert again.returncode == 0, again.stdout + again.stderr
    assert (etc / "config.yaml").read_text() == "# edited\n"
    assert not (etc / "rules" / rules[0]).exists()
    assert "kept /etc/news-monitor/config.yaml" in again.stdout
    assert unit.read_text() == UNIT.read_text()


@pytest.mark.process
def test_make_install_prefix_moves_the_venv_and_the_unit_follows(tmp_path: Path) -> None:
    root = tmp_path / "root"

    result = make_install(root, "INSTALL_VENV=0", "PREFIX=/srv/news-monitor", "BINDIR=")

    assert result.returncode == 0, result.stdout + result.stderr
    unit = (root / "etc" / "systemd" / "system" / "news-monitor.service").read_text()
    assert "ExecStartPre=/srv/news-monitor/bin/news-monitor check\n" in unit
    assert "ExecStart=/srv/news-monitor/bin/news-monitor run\n" in unit
    directives = [line for line in unit.splitlines() if not line.startswith("#")]
    assert not [line for line in directives if "/opt/news-monitor" in line]
    assert not (root / "usr").exists()  # BINDIR= : no link


@pytest.mark.process
def test_make_install_refuses_a_python_the_service_cannot_see(tmp_path: Path) -> None:
    # A stand-in interpreter that says it lives in a home directory (as pyenv's do).
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\necho /home/someone/.pyenv/versions/3.11.9/bin/python3.11\n")
    python.chmod(0o755)
    root = tmp_path / "root"

    result = make_install(root, f"SERVICE_PYTHON={python}")

    assert result.returncode != 0
    assert "ProtectHome=yes" in result.stderr
    assert not root.exists()  # refused before anything was installed


@pytest.mark.skipif(os.geteuid() == 0, reason="as root this would install for real")
def test_make_install_without_destdir_wants_root() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "--no-print-directory", "-C", str(ROOT), "install", "INSTALL_VENV=0", "BINDIR="],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "run it as root" in result.stderr


# --- the real daemon ---------------------------------------------------------------------

RULES = """\
rules:
  - name: sanctions
    any: [sanctions, embargo]
"""
ITEMS = [
    Item(
        title="EU agrees new sanctions on Russian oil",
        description="Ministers agreed a package of sanctions and an embargo on crude.",
        link="https://news.example.org/europe/sanctions",
        guid="wire-0002",
    ),
]


@pytest.fixture
def notified_project(
    make_project: Callable[..., Project], feed_dir: Path, feed_server: FeedServer, webhook: Webhook
) -> Project:
    return wire_project(make_project, feed_dir, feed_server, webhook, ITEMS, RULES)


@pytest.fixture
def start_notified(
    notify_path: Path, start_daemon: Callable[..., DaemonProcess]
) -> Iterator[Callable[..., tuple[DaemonProcess, NotifySocket]]]:
    """Start `python -m monitor run` as systemd would: $NOTIFY_SOCKET (and the given
    watchdog variables) pointing at a socket of this test."""
    receivers: list[NotifySocket] = []

    def start(project: Project, **watchdog: str) -> tuple[DaemonProcess, NotifySocket]:
        receivers.append(NotifySocket(str(notify_path)))
        daemon = start_daemon(project, NOTIFY_SOCKET=str(notify_path), **watchdog)
        return daemon, receivers[-1]

    yield start
    for receiver in receivers:
        receiver.close()


def stop(daemon: DaemonProcess, receiver: NotifySocket) -> int:
    """SIGTERM; the STOPPING=1 it must say; its exit status."""
    daemon.proc.send_signal(signal.SIGTERM)
    receiver.wait_for(lambda m: m.states.get("STOPPING") == "1", "STOPPING=1", STOP_DEADLINE)
    try:
        return daemon.proc.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"daemon did not exit within {STOP_DEADLINE}s of SIGTERM:\n{daemon.stderr()}")


def test_daemon_says_ready_pings_the_watchdog_and_says_stopping(
    notified_project: Project, start_notified: Callable[..., tuple[DaemonProcess, NotifySocket]]
) -> None:
    daemon, receiver = start_notified(notified_project, WATCHDOG_USEC="1000000")

    ready = receiver.wait_for(lambda m: m.states.get("READY") == "1", "READY=1", 30)
    for n in (1, 2):  # every 0.5 s: half of WATCHDOG_USEC
        receiver.wait_for(lambda m: m.states.get("WATCHDOG") == "1", f"WATCHDOG=1 #{n}", 10)
    assert stop(daemon, receiver) == 0, daemon.stderr()

    # NotifyAccess=main: everything came from the daemon process, not its parse workers.
    assert {m.pid for m in receiver.received} == {daemon.proc.pid}
    assert ready.states.get("STATUS", "-") != ""


def test_daemon_reload_says_reloading_then_ready(
    notified_project: Project, start_notified: Callable[..., tuple[DaemonProcess, NotifySocket]]
) -> None:
    daemon, receiver = start_notified(notified_project, WATCHDOG_USEC="1000000")
    receiver.wait_for(lambda m: m.states.get("READY") == "1", "READY=1", 30)

    sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = receiver.wait_for(lambda m: m.states.get("RELOADING") == "1", "RELOADING=1")
    # After the request, by the clock systemd compares it with (Type=notify-reload).
    assert int(reloading.states["MONOTONIC_USEC"]) >= sent
    receiver.wait_for(lambda m: m.states.get("READY") == "1", "READY=1 after the reload")
    assert stop(daemon, receiver) == 0, daemon.stderr()

    assert {m.pid for m in receiver.received} == {daemon.proc.pid}


@pytest.mark.parametrize(
    "watchdog",
    [{}, {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}],
    ids=["no-watchdog", "another-process-watchdog"],
)
def test_daemon_pings_no_watchdog_that_is_not_its_own(
    watchdog: dict[str, str],
    notified_project: Project,
    start_notified: Callable[..., tuple[DaemonProcess, NotifySocket]],
) -> None:
    # No WATCHDOG_USEC, or a WATCHDOG_PID of another process (the environment was
    # inherited): watchdog_interval() is None and nothing is pinged.
    daemon, receiver = start_notified(notified_project, **watchdog)
    receiver.wait_for(lambda m: m.states.get("READY") == "1", "READY=1", 30)
    receiver.listen(1.2)  # more than two intervals of the watchdog above
    assert stop(daemon, receiver) == 0, daemon.stderr()

    assert [m.raw for m in receiver.received if "WATCHDOG" in m.states] == []
