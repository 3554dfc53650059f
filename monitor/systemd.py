"""The systemd service protocol (``sd_notify``), written out: no dependency.

systemd starts a ``Type=notify`` service with ``$NOTIFY_SOCKET`` (an ``AF_UNIX`` datagram
socket; a leading ``@`` means the abstract namespace) and, with ``WatchdogSec=``,
``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``. The daemon tells it, one datagram per call,
newline-separated ``NAME=value`` assignments:

* ``READY=1`` once it polls (``systemctl start`` returns then, ordering waits for it);
* ``WATCHDOG=1`` every :func:`watchdog_interval` seconds, from a job on the event loop,
  so a hung loop stops the pings and ``WatchdogSec=`` restarts the unit;
* ``RELOADING=1`` (:func:`reloading`) then ``READY=1`` around a SIGHUP reload;
* ``STOPPING=1`` when it starts shutting down;
* ``STATUS=...`` (:func:`status`), the line ``systemctl status`` shows.

Outside systemd (no ``$NOTIFY_SOCKET``: tests, ``news-monitor demo``, a terminal) every
call does nothing and returns False. A failed send is logged at debug level and never
raised: a notification must not take the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

#: Longest one notification may hold up its caller (the daemon's event loop) when the
#: receiver does not read its socket; the datagram is then dropped.
SEND_TIMEOUT = 1.0


def _address(target: str) -> bytes | None:
    """The socket address of ``$NOTIFY_SOCKET``, or None for a kind not supported here."""
    if target.startswith("@"):
        return b"\0" + os.fsencode(target[1:])  # abstract namespace
    if target.startswith("/"):
        return os.fsencode(target)
    return None  # e.g. "vsock:...", used by virtual machine managers


def notify(*states: str) -> bool:
    """Send ``states`` (``"READY=1"``, ``"WATCHDOG=1"``, ``"STATUS=..."``...) as one message
    to the service manager. True if it was sent; False, without raising, when there is no
    ``$NOTIFY_SOCKET`` or the send failed (logged at debug level)."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not states:
        return False
    address = _address(target)
    if address is None:
        log.debug("notify_unsupported socket=%s", target)
        return False
    message = "\n".join(states).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.sendto(message, address)
    except (OSError, ValueError) as exc:
        log.debug("notify_failed socket=%s states=%s error=%s", target, _names(states), exc)
        return False
    return True


def _names(states: tuple[str, ...]) -> str:
    return ",".join(state.partition("=")[0] for state in states)


def status(text: str) -> str:
    """The ``STATUS=`` assignment for ``text``, on one line (a newline would end it)."""
    return "STATUS=" + " ".join(text.split())


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock ``MONOTONIC_USEC=`` is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def reloading() -> bool:
    """Say a reload has begun; send ``READY=1`` when it is over (whatever its outcome).

    ``MONOTONIC_USEC`` tells systemd 253 and later (``Type=notify-reload``) that this
    reload began after the request; earlier versions ignore it."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as systemd
    recommends. None when no watchdog is set for this process: no or a malformed
    ``$WATCHDOG_USEC``, or a ``$WATCHDOG_PID`` of another process (a child that inherited
    the environment)."""
    raw = os.environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


async def watchdog_ping() -> None:
    """One ``WATCHDOG=1``. A coroutine, so the scheduler runs it on the event loop itself
    (a plain function would go to a worker thread and keep pinging while the loop hangs)."""
    notify("WATCHDOG=1")
