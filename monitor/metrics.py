"""Prometheus metrics and a health check on a local HTTP port. prometheus_client lives here.

:class:`Metrics` holds the numbers, in a registry of its own (never prometheus_client's
global one, so several daemons or tests in one process keep their own counts); the
daemon reports polls, hits and deliveries to it as they happen and sets the gauges from
a periodic job. :func:`serve` answers ``GET /metrics`` (the Prometheus text format) and
``GET /health`` (200 while the scheduler loop beats, 503 once it has not for
``stale_after`` seconds) from a thread of its own.

No label names a feed: with 10,000 feeds that would be 10,000 series per metric. Rules
and channels are few, so hits and deliveries are counted per rule and per channel.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitor import __version__

log = logging.getLogger(__name__)

#: What a poll can come to (monitor.models.PollResult.outcome).
POLL_OUTCOMES = ("ok", "not-modified", "error", "waiting", "stopped")
#: The polls that asked the server for the feed, and so have a fetch time ("waiting"
#: polls send nothing; a "stopped" feed's last 410 answer is counted in polls_total only).
FETCHED = frozenset({"ok", "not-modified", "error"})
#: What one send of one delivery can come to: sent, failed (retried later) or dead (failed
#: for the last time, given up after delivery.max_age; not counted as failed as well).
DELIVERY_OUTCOMES = ("sent", "failed", "dead")
#: Outbox statuses always exported once the outbox has been counted, 0 when absent.
OUTBOX_STATUSES = ("pending", "deferred", "batched", "dead", "muted", "sent")

#: Fetch times: 10 ms (a 304 from a near host) to 60 s (a slow server, at the timeout).
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
#: Article first seen -> alert accepted by the channel: 0.1 s to a day (retries, outages).
LATENCY_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
_TEXT = "text/plain; charset=utf-8"


class Metrics:
    """The daemon's numbers. ``clock`` (seconds, monotonic) times the heartbeat.

    The prometheus_client metrics are thread-safe; the heartbeat and the poll tallies
    are kept under a lock, since :meth:`beat` and :meth:`poll` are called on the event
    loop and :meth:`health` and the scrape run on the HTTP server's threads."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self._last_beat: float | None = None
        self._ok = 0
        self._not_modified = 0
        self._channels: set[str] = set()
        self._statuses: set[str] = set()
        r = self.registry

        self._polls = Counter(
            "news_monitor_polls", "Feed polls by outcome.", ["outcome"], registry=r
        )
        for outcome in POLL_OUTCOMES:
            self._polls.labels(outcome)  # every outcome exported from the start, at 0
        self._fetch_seconds = Histogram(
            "news_monitor_fetch_seconds",
            "Time to fetch a feed (polls that sent a request).",
            buckets=FETCH_BUCKETS,
            registry=r,
        )
        self._fetch_bytes = Counter(
            "news_monitor_fetch_bytes", "Bytes of feed documents fetched.", registry=r
        )
        self._items_new = Counter(
            "news_monitor_items_new", "Articles not seen before, stored.", registry=r
        )
        self._not_modified_ratio = Gauge(
            "news_monitor_not_modified_ratio",
            "Share of successful polls answered 304 Not Modified since start.",
            registry=r,
        )
        self._hits = Counter(
            "news_monitor_hits", "Rule hits stored, by rule.", ["rule"], registry=r
        )
        self._deliveries = Counter(
            "news_monitor_deliveries",
            "Delivery attempts by channel and outcome (sent, failed, dead).",
            ["channel", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            "news_monitor_alert_latency_seconds",
            "Time from an article first seen to its alert delivered.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Not news_monitor_deliveries: the counter above owns that name.
        self._outbox = Gauge(
            "news_monitor_outbox_deliveries",
            "Deliveries in the outbox by status.",
            ["status"],
            registry=r,
        )
        self._broken_feeds = Gauge(
            "news_monitor_broken_feeds", "Feeds failing or stopped.", registry=r
        )
        self._feeds = Gauge("news_monitor_feeds", "Feeds scheduled for polling.", registry=r)
        self._heartbeat_age = Gauge(
            "news_monitor_loop_heartbeat_age_seconds",
            "Seconds since the scheduler loop last beat (since start before the first beat).",
            registry=r,
        )
        self._heartbeat_age.set_function(self.heartbeat_age)
        Info("news_monitor", "The running news-monitor.", registry=r).info({"version": __version__})

    # --- polls --------------------------------------------------------------------------

    def poll(self, outcome: str, seconds: float, size: int, new_items: int) -> None:
        """One poll of one feed: its outcome (PollResult.outcome), the seconds its fetch
        took, the bytes fetched and the new articles stored."""
        if outcome not in POLL_OUTCOMES:
            raise ValueError(f"unknown poll outcome {outcome!r} (one of {POLL_OUTCOMES})")
        self._polls.labels(outcome).inc()
        if outcome in FETCHED:
            self._fetch_seconds.observe(max(0.0, seconds))
        if size:
            self._fetch_bytes.inc(size)
        if new_items:
            self._items_new.inc(new_items)
        if outcome in ("ok", "not-modified"):
            with self._lock:
                if outcome == "ok":
                    self._ok += 1
                else:
                    self._not_modified += 1
                self._not_modified_ratio.set(self._not_modified / (self._ok + self._not_modified))

    def hit(self, rule: str, count: int = 1) -> None:
        """``count`` hits of ``rule`` stored."""
        self._hits.labels(rule).inc(count)

    # --- deliveries ---------------------------------------------------------------------

    def delivery(self, channel: str, outcome: str) -> None:
        """One send to ``channel``: "sent", "failed" or "dead"."""
        if outcome not in DELIVERY_OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r} (one of {DELIVERY_OUTCOMES})")
        with self._lock:
            new = channel not in self._channels
            self._channels.add(channel)
        if new:  # a channel's every outcome exported from its first delivery, at 0
            for each in DELIVERY_OUTCOMES:
                self._deliveries.labels(channel, each)
        self._deliveries.labels(channel, outcome).inc()

    def alert_latency(self, seconds: float) -> None:
        """An alert delivered ``seconds`` after its article was first seen."""
        self._latency.observe(max(0.0, seconds))

    def outbox(self, counts: Mapping[str, int]) -> None:
        """Deliveries in the outbox by status. A status counted before and missing now is
        set to 0, so a drained queue does not keep its last value."""
        with self._lock:
            self._statuses.update(OUTBOX_STATUSES, counts)
            statuses = sorted(self._statuses)
        for status in statuses:
            self._outbox.labels(status).set(counts.get(status, 0))

    # --- feeds --------------------------------------------------------------------------

    def broken_feeds(self, count: int) -> None:
        """Feeds that are failing or stopped, now."""
        self._broken_feeds.set(count)

    def feeds(self, count: int) -> None:
        """Feeds scheduled for polling, now."""
        self._feeds.set(count)

    # --- liveness -----------------------------------------------------------------------

    def beat(self) -> None:
        """The scheduler loop is alive: called by a periodic job on the event loop."""
        moment = self.clock()
        with self._lock:
            self._last_beat = moment

    def heartbeat_age(self) -> float:
        """Seconds since the last :meth:`beat`, or since start if there was none."""
        now = self.clock()
        with self._lock:
            last = self._last_beat
        return max(0.0, now - (self.started if last is None else last))

    def health(self, stale_after: float) -> tuple[bool, str]:
        """(healthy, "ok") or (False, why): unhealthy once the last beat, or the start if
        there was no beat yet, is more than ``stale_after`` seconds ago."""
        if stale_after <= 0:
            raise ValueError(f"stale_after must be positive, not {stale_after!r}")
        now = self.clock()
        with self._lock:
            last = self._last_beat
        if last is None:
            age = now - self.started
            if age > stale_after:
                return False, f"stuck: no scheduler heartbeat in the {age:.0f} s since start"
            return True, "ok"
        age = now - last
        if age > stale_after:
            return False, f"stuck: last scheduler heartbeat {age:.0f} s ago"
        return True, "ok"


# --- the HTTP endpoint ------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a DNS query at every start);
        # nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper hanging up mid-answer is no reason for a traceback on stderr.
        log.debug("metrics_request_failed client=%s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler(metrics: Metrics, stale_after: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"news-monitor/{__version__}"
        sys_version = ""
        timeout = 10.0  # a client that sends nothing does not hold a thread for long

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: scrapes every 15 s would flood the journal

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            path = urlsplit(self.path).path
            status, kind, payload = HTTPStatus.OK, _TEXT, b""
            if path == "/metrics":
                try:
                    payload, kind = generate_latest(metrics.registry), CONTENT_TYPE_LATEST
                except Exception:
                    log.exception("metrics_collect_failed")
                    status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, b"collect failed\n"
            elif path == "/health":
                ok, reason = metrics.health(stale_after)
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                payload = f"{reason}\n".encode()
            else:
                status, payload = HTTPStatus.NOT_FOUND, b"not found: try /metrics or /health\n"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if body:
                self.wfile.write(payload)

    return Handler


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MetricsServer:
    """The running endpoint; :meth:`close` stops it (safe to call more than once)."""

    def __init__(self, httpd: _Server, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._closed = False
        self._close_lock = threading.Lock()
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{address(self.host, self.port)}/"

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    metrics: Metrics,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stale_after: float = 120.0,
    poll_interval: float = 0.5,
) -> MetricsServer:
    """Answer ``/metrics`` and ``/health`` on ``host:port`` (0: a free port) from a daemon
    thread until closed. ``/health`` is 503 once the scheduler has not beaten for
    ``stale_after`` seconds. ``poll_interval``: how soon :meth:`MetricsServer.close`
    takes effect.

    Raises OSError saying which address could not be had (in use, not local...)."""
    if stale_after <= 0:
        raise ValueError(f"stale_after must be positive, not {stale_after!r}")
    where = address(host, port)
    server_class = _Server6 if ":" in host else _Server
    try:
        httpd = server_class((host, port), _handler(metrics, stale_after))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            message = f"metrics port {where} is in use; set metrics.listen"
        else:
            message = f"cannot listen for metrics on {where}: {exc.strerror or exc}; " + (
                "set metrics.listen"
            )
        error = OSError(message)
        error.errno = exc.errno
        raise error from exc
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name="metrics-http",
        daemon=True,
    )
    thread.start()
    return MetricsServer(httpd, thread)


# --- settings ---------------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")


def parse_listen(value: str) -> tuple[str, int] | None:
    """(host, port) of a ``metrics.listen`` setting: ``127.0.0.1:9464``,
    ``localhost:9464``, ``:9464`` (127.0.0.1) or ``[::1]:9464``; None if it is not one.
    Port 0 means a free port."""
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            return None
        try:
            if ipaddress.ip_address(host).version != 6:
                return None
        except ValueError:
            return None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            return None  # no port, or an IPv6 address without brackets
        host = host or DEFAULT_HOST
        if not _HOSTNAME.fullmatch(host):
            return None
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                return None
    if not _PORT.fullmatch(port) or int(port) > 65535:
        return None
    return host, int(port)
