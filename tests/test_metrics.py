"""monitor.metrics against a real endpoint on 127.0.0.1: what /metrics shows, /health going
stale and recovering on an injected clock, the listen setting."""

from __future__ import annotations

import errno
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

import monitor
from monitor.metrics import Metrics, MetricsServer, parse_listen, serve


class Ticker:
    """An injectable monotonic clock: still until advanced."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def metrics(ticker: Ticker) -> Metrics:
    return Metrics(clock=ticker)


@pytest.fixture
def server(metrics: Metrics) -> Iterator[MetricsServer]:
    with serve(metrics, port=0, stale_after=120.0, poll_interval=0.02) as running:
        yield running


def get(server: MetricsServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, Content-Type, body) of a request to the server."""
    url = f"http://127.0.0.1:{server.port}{path}"
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: MetricsServer) -> Samples:
    status, kind, text = get(server, "/metrics")
    assert status == 200 and kind == CONTENT_TYPE_LATEST
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_show_polls_hits_deliveries_and_gauges(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.poll("ok", 0.2, 5000, 3)
    metrics.poll("ok", 1.5, 7000, 0)
    metrics.poll("not-modified", 0.02, 0, 0)
    metrics.poll("error", 30.0, 0, 0)
    metrics.poll("waiting", 0.0, 0, 0)  # sent nothing: no fetch time
    metrics.hit("sanctions", 2)
    metrics.hit("troop-movements")
    metrics.hit("sanctions")
    metrics.delivery("mail", "sent")
    metrics.delivery("mail", "sent")
    metrics.delivery("mail", "failed")
    metrics.delivery("chat", "dead")
    metrics.alert_latency(3.5)
    metrics.alert_latency(7200.0)
    metrics.outbox({"pending": 4, "dead": 1})
    metrics.broken_feeds(2)
    metrics.feeds(10_000)

    s = scrape(server)
    polls = {o: value(s, "news_monitor_polls_total", outcome=o) for o in ("ok", "not-modified")}
    assert polls == {"ok": 2, "not-modified": 1}
    assert value(s, "news_monitor_polls_total", outcome="error") == 1
    assert value(s, "news_monitor_polls_total", outcome="waiting") == 1
    assert value(s, "news_monitor_polls_total", outcome="stopped") == 0  # exported at 0
    assert value(s, "news_monitor_fetch_seconds_count") == 4
    assert value(s, "news_monitor_fetch_seconds_sum") == pytest.approx(31.72)
    assert value(s, "news_monitor_fetch_seconds_bucket", le="0.01") == 0
    assert value(s, "news_monitor_fetch_seconds_bucket", le="0.025") == 1
    assert value(s, "news_monitor_fetch_seconds_bucket", le="60.0") == 4
    assert value(s, "news_monitor_fetch_bytes_total") == 12_000
    assert value(s, "news_monitor_items_new_total") == 3

    assert value(s, "news_monitor_hits_total", rule="sanctions") == 3
    assert value(s, "news_monitor_hits_total", rule="troop-movements") == 1

    def sends(channel: str, outcome: str) -> float | None:
        return value(s, "news_monitor_deliveries_total", channel=channel, outcome=outcome)

    assert (sends("mail", "sent"), sends("mail", "failed"), sends("mail", "dead")) == (2, 1, 0)
    assert (sends("chat", "sent"), sends("chat", "failed"), sends("chat", "dead")) == (0, 0, 1)

    assert value(s, "news_monitor_alert_latency_seconds_count") == 2
    assert value(s, "news_monitor_alert_latency_seconds_bucket", le="2.5") == 0
    assert value(s, "news_monitor_alert_latency_seconds_bucket", le="5.0") == 1
    assert value(s, "news_monitor_alert_latency_seconds_bucket", le="3600.0") == 1
    assert value(s, "news_monitor_alert_latency_seconds_bucket", le="86400.0") == 2

    assert value(s, "news_monitor_outbox_deliveries", status="pending") == 4
    assert value(s, "news_monitor_outbox_deliveries", status="dead") == 1
    assert value(s, "news_monitor_outbox_deliveries", status="deferred") == 0
    assert value(s, "news_monitor_broken_feeds") == 2
    assert value(s, "news_monitor_feeds") == 10_000
    assert value(s, "news_monitor_info", version=monitor.__version__) == 1
    # No series is labelled by feed.
    assert not any(name == "feed" for _, labels in s for name, _ in labels)


def test_not_modified_ratio(metrics: Metrics, server: MetricsServer) -> None:
    assert value(scrape(server), "news_monitor_not_modified_ratio") == 0
    for _ in range(3):
        metrics.poll("not-modified", 0.01, 0, 0)
    metrics.poll("ok", 0.1, 100, 1)
    # Failed and skipped polls say nothing about how often feeds change.
    metrics.poll("error", 1.0, 0, 0)
    metrics.poll("waiting", 0.0, 0, 0)
    metrics.poll("stopped", 0.0, 0, 0)
    assert value(scrape(server), "news_monitor_not_modified_ratio") == 0.75


def test_a_drained_outbox_status_goes_back_to_zero(metrics: Metrics, server: MetricsServer) -> None:
    assert value(scrape(server), "news_monitor_outbox_deliveries", status="pending") is None
    metrics.outbox({"pending": 3, "batched": 2, "held": 1})
    metrics.outbox({"sent": 5})
    s = scrape(server)
    statuses = {
        dict(labels)["status"]: v
        for (name, labels), v in s.items()
        if name == "news_monitor_outbox_deliveries"
    }
    assert statuses == {
        "pending": 0,
        "deferred": 0,
        "batched": 0,
        "dead": 0,
        "muted": 0,
        "sent": 5,
        "held": 0,
    }


def test_health_goes_stale_without_beats_and_recovers(
    metrics: Metrics, server: MetricsServer, ticker: Ticker
) -> None:
    # Just started, no beat yet: healthy until stale_after has passed.
    assert get(server, "/health") == (200, "text/plain; charset=utf-8", "ok\n")
    ticker.advance(120)
    assert get(server, "/health")[0] == 200
    ticker.advance(1)
    assert get(server, "/health")[::2] == (
        503,
        "stuck: no scheduler heartbeat in the 121 s since start\n",
    )

    metrics.beat()
    assert get(server, "/health")[::2] == (200, "ok\n")
    assert value(scrape(server), "news_monitor_loop_heartbeat_age_seconds") == 0
    ticker.advance(120)  # exactly stale_after: not older yet
    assert get(server, "/health")[0] == 200
    ticker.advance(180)
    assert get(server, "/health")[::2] == (503, "stuck: last scheduler heartbeat 300 s ago\n")
    assert value(scrape(server), "news_monitor_loop_heartbeat_age_seconds") == 300
    assert get(server, "/health", method="HEAD")[::2] == (503, "")

    metrics.beat()
    assert get(server, "/health")[::2] == (200, "ok\n")
    assert metrics.health(120.0) == (True, "ok")


def test_other_paths_are_404_and_nothing_is_logged(
    server: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    for path in ("/", "/metric", "/metrics/x", "/healthz", "/favicon.ico"):
        assert get(server, path)[0] == 404, path
    assert get(server, "/metrics?name[]=x")[0] == 200  # a query string is ignored
    assert get(server, "/health?verbose=1")[0] == 200
    assert get(server, "/metrics", method="HEAD")[::2] == (200, "")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


@pytest.mark.process
def test_two_instances_in_one_process_keep_their_own_counts(ticker: Ticker) -> None:
    first, second = Metrics(clock=ticker), Metrics(clock=ticker)
    with (
        serve(first, port=0, poll_interval=0.02) as one,
        serve(second, port=0, poll_interval=0.02) as two,
    ):
        first.poll("ok", 0.1, 10, 1)
        first.hit("sanctions")
        second.delivery("mail", "sent")
        a, b = scrape(one), scrape(two)
    assert value(a, "news_monitor_polls_total", outcome="ok") == 1
    assert value(b, "news_monitor_polls_total", outcome="ok") == 0
    assert value(a, "news_monitor_hits_total", rule="sanctions") == 1
    assert value(b, "news_monitor_hits_total", rule="sanctions") is None
    assert value(a, "news_monitor_deliveries_total", channel="mail", outcome="sent") is None
    assert value(b, "news_monitor_deliveries_total", channel="mail", outcome="sent") == 1
    # The process-wide default registry is left alone.
    assert prometheus_client.REGISTRY.get_sample_value("news_monitor_feeds") is None


@pytest.mark.process
def test_a_taken_port_is_a_clear_error(metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as caught:
            serve(metrics, port=port)
    assert str(caught.value) == f"metrics port 127.0.0.1:{port} is in use; set metrics.listen"
    assert caught.value.errno == errno.EADDRINUSE


def test_an_address_not_of_this_host_is_a_clear_error(metrics: Metrics) -> None:
    with pytest.raises(OSError, match=r"cannot listen for metrics on 192\.0\.2\.1:9464: .*"):
        serve(metrics, "192.0.2.1", 9464)  # TEST-NET-1: never a local address


@pytest.mark.process
def test_ipv6_loopback(metrics: Metrics) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with serve(metrics, "::1", 0, poll_interval=0.02) as running:
        assert running.url == f"http://[::1]:{running.port}/"
        with urllib.request.urlopen(f"{running.url}health", timeout=5) as response:
            assert response.status == 200


@pytest.mark.process
def test_close_twice_is_fine(metrics: Metrics) -> None:
    running = serve(metrics, port=0, poll_interval=0.02)
    assert get(running, "/health")[0] == 200
    running.close()
    # Closed: nothing listens at the port any more.
    with pytest.raises(urllib.error.URLError) as refused:
        get(running, "/health")
    assert isinstance(refused.value.reason, ConnectionRefusedError), refused.value
    running.close()  # raises nothing (a hang would fail at the test's timeout)
    with pytest.raises(urllib.error.URLError):
        get(running, "/health")


def test_unknown_outcomes_are_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="poll outcome"):
        metrics.poll("fine", 0.1, 0, 0)
    with pytest.raises(ValueError, match="delivery outcome"):
        metrics.delivery("mail", "bounced")
    with pytest.raises(ValueError, match="stale_after"):
        metrics.health(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
        ("metrics.internal.example:65535", ("metrics.internal.example", 65535)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("", None),
        ("9464", None),
        ("127.0.0.1", None),
        ("127.0.0.1:", None),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:-1", None),
        ("127.0.0.1:+80", None),
        ("127.0.0.1:9_464", None),
        ("127.0.0.1: 9464", None),
        ("::1:9464", None),
        ("[::1]", None),
        ("[127.0.0.1]:9464", None),
        ("[nonsense]:9464", None),
        ("300.0.0.1:9464", None),
        ("bad_host:9464", None),
        ("-bad.example:9464", None),
        ("http://127.0.0.1:9464", None),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(text) == expected
