from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.health import feed_health
from monitor.models import FeedState

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def state(**kw: Any) -> FeedState:
    return replace(FeedState("wire", last_success=NOW, last_new=NOW), **kw)


def test_one_notice_when_failing_and_one_when_recovered() -> None:
    kw = {"failures": 3, "silence": None}
    assert feed_health("wire", "u", state(consecutive_errors=2), NOW, **kw).notices == []
    third = feed_health("wire", "u", state(consecutive_errors=3, last_error="HTTP 500"), NOW, **kw)
    [notice] = third.notices
    assert notice.kind == "feed-failing" and "3 errors in a row" in notice.title
    assert "HTTP 500" in notice.body and third.flags == {"failing_alerted": 1}
    # Already told: more failures say nothing.
    later = feed_health("wire", "u", state(consecutive_errors=9, failing_alerted=True), NOW, **kw)
    assert later.notices == [] and later.flags == {}
    back = feed_health("wire", "u", state(failing_alerted=True), NOW, **kw)
    assert [n.kind for n in back.notices] == ["feed-recovered"]
    assert back.flags == {"failing_alerted": 0}


def test_silence_notice_is_dampened_too() -> None:
    old = NOW - timedelta(days=3)
    quiet = feed_health("wire", "u", state(last_new=old), NOW, failures=5, silence=2 * 86400)
    assert [n.kind for n in quiet.notices] == ["feed-silent"]
    assert "3.0 days" in quiet.notices[0].title
    again = feed_health(
        "wire", "u", state(last_new=old, quiet_alerted=True), NOW, failures=5, silence=2 * 86400
    )
    assert again.notices == []
    active = feed_health("wire", "u", state(quiet_alerted=True), NOW, failures=5, silence=86400)
    assert [n.kind for n in active.notices] == ["feed-active"]


def test_gone_feed_gets_one_stop_notice() -> None:
    stop = feed_health(
        "wire",
        "u",
        state(consecutive_errors=1, last_error="HTTP 410 Gone"),
        NOW,
        failures=5,
        silence=None,
        newly_stopped=True,
    )
    [notice] = stop.notices
    assert notice.kind == "feed-stopped" and "410 Gone" in notice.body
