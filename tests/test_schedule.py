from datetime import UTC, datetime, timedelta

from monitor.schedule import MAX_HINT, cache_hint, next_poll, rss_ttl

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_cache_hints_raise_but_never_lower_the_interval() -> None:
    assert cache_hint({"Cache-Control": "public, max-age=1800"}, None, NOW) == 1800
    assert cache_hint({"cache-control": "s-maxage=60, max-age=120"}, None, NOW) == 120
    assert cache_hint({"Cache-Control": "no-cache, max-age=999"}, None, NOW) == 0
    expires = "Mon, 02 Mar 2026 10:00:00 GMT"
    assert cache_hint({"Expires": expires}, None, NOW) == 3600
    assert cache_hint({"Expires": "garbage"}, None, NOW) == 0
    assert cache_hint({}, 30, NOW) == 1800  # RSS <ttl> in minutes
    assert cache_hint({"Cache-Control": "max-age=99999999"}, None, NOW) == MAX_HINT
    # Hints only ever raise: a 60 s hint leaves a 10-minute interval alone.
    assert next_poll(NOW, interval=600, hint=60) == NOW + timedelta(seconds=600)
    assert next_poll(NOW, interval=600, hint=1800) == NOW + timedelta(seconds=1800)


def test_errors_back_off_exponentially_up_to_a_cap() -> None:
    delays = [
        (next_poll(NOW, interval=300, errors=n, max_backoff=3600) - NOW).total_seconds()
        for n in range(1, 7)
    ]
    assert delays == [300, 600, 1200, 2400, 3600, 3600]


def test_retry_after_is_a_floor() -> None:
    assert next_poll(NOW, interval=300, errors=1, retry_after=7200) == NOW + timedelta(hours=2)
    assert next_poll(NOW, interval=300, retry_after=10) == NOW + timedelta(seconds=300)


def test_rss_ttl_is_read_from_the_channel_only() -> None:
    assert rss_ttl(b"<rss><channel><ttl> 45 </ttl><item><ttl>1</ttl></item>") == 45
    assert rss_ttl(b"<rss><channel><item><ttl>5</ttl></item></channel></rss>") is None
    assert rss_ttl(b"") is None
