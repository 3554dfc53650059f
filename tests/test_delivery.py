"""deliver_due with a real Store and real apprise channels: SMTP (aiosmtpd) and a JSON
webhook, both listening on 127.0.0.1. Time comes from an injected clock."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from conftest import Clock, SmtpServer, Webhook

from monitor.deliver import Channel, build_channels, deliver_due
from monitor.models import Article, ChannelConfig, Hit
from monitor.store import Store
from monitor.text import stamp

TITLE = "Troops mass near the border"
LINK = "https://news.example.org/world/troops-border?ref=rss"
SNIPPET = "Thousands of soldiers were seen moving toward the frontier on Tuesday"
RETRY_MIN, RETRY_MAX = 30.0, 3600.0


def seed(
    store: Store,
    clock: Clock,
    channels: Sequence[str],
    *,
    uid: str = "wire-0001",
    title: str = TITLE,
    rule: str = "troop-movements",
    summary: str = SNIPPET + ", officials said.",
) -> list[int]:
    """Store one article with one hit, pending on ``channels``; returns the delivery ids."""
    article = Article(
        feed="wire",
        uid=uid,
        title=title,
        link=LINK,
        summary=summary,
        content_hash=uid,
    )
    hit = Hit(
        rule=rule,
        rule_version="v1",
        severity="urgent",
        terms=("troops", "soldiers", "frontier"),
        snippet=SNIPPET + "…",
        channels=tuple(channels),
    )
    return store.save([(article, [hit])], clock())


def channels_for(urls: Mapping[str, str]) -> dict[str, Channel]:
    channels, errors = build_channels(tuple(ChannelConfig(n, u) for n, u in urls.items()))
    assert errors == []
    return channels


def deliver(store: Store, channels: Mapping[str, Channel], clock: Clock) -> tuple[int, int]:
    return asyncio.run(
        deliver_due(store, channels, clock, retry_min=RETRY_MIN, retry_max=RETRY_MAX)
    )


def delivery(store: Store, delivery_id: int) -> dict[str, Any]:
    return next(store.db.query("SELECT * FROM deliveries WHERE id = ?", [delivery_id]))


def test_email_alert_reaches_the_smtp_server(
    store: Store, clock: Clock, smtp_server: SmtpServer
) -> None:
    [delivery_id] = seed(store, clock, ["mail"])
    channels = channels_for({"mail": smtp_server.url()})

    assert deliver(store, channels, clock) == (1, 0)

    [message] = smtp_server.messages
    assert smtp_server.envelopes == [("monitor@example.org", ["desk@example.org"])]
    assert message["To"] == "desk@example.org"
    assert "troop-movements" in message["Subject"]
    assert TITLE in message["Subject"]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "troops, soldiers, frontier" in text
    assert SNIPPET in text
    assert LINK in text
    assert f"#{delivery_id}" in text
    assert "urgent" in text

    row = delivery(store, delivery_id)
    assert row["status"] == "sent"
    assert row["attempts"] == 1
    assert row["sent_at"] == stamp(clock())
    assert row["last_error"] is None

    clock.advance(3600)
    assert deliver(store, channels, clock) == (0, 0)
    assert len(smtp_server.messages) == 1


def test_email_alert_is_html_with_a_text_alternative_and_markup_stays_text(
    store: Store, clock: Clock, smtp_server: SmtpServer
) -> None:
    """Email is HTML with a plain-text part, one field per line; markup from a feed title
    is escaped in the HTML part, so a mail client shows it as text, never renders it."""
    [delivery_id] = seed(
        store, clock, ["mail"], title='Troops <img src="https://evil.example/x.png"> at border'
    )
    channels = channels_for({"mail": smtp_server.url()})

    assert deliver(store, channels, clock) == (1, 0)

    [message] = smtp_server.messages
    assert "\n" not in message["Subject"] and "<img" in message["Subject"]
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    lines = [line.strip() for line in plain.get_content().splitlines()]
    assert "Matched: troops, soldiers, frontier" in lines
    assert f"Link: {LINK}" in lines
    assert any(line.startswith(f"Delivery #{delivery_id}") for line in lines)
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    content = html.get_content()
    assert "<img" not in content and "&lt;img src=" in content
    assert "<mark>soldiers</mark>" in content and f'href="{LINK}"' in content


def test_webhook_alert_posts_title_and_body_as_json(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    [delivery_id] = seed(store, clock, ["chat"])
    channels = channels_for({"chat": webhook.url("alerts/desk")})

    assert deliver(store, channels, clock) == (1, 0)

    [request] = webhook.received
    assert request.path == "/alerts/desk"
    assert request.headers["Content-Type"].startswith("application/json")
    payload = request.body
    assert payload["title"] == f"[troop-movements] {TITLE}"
    # json:// channels get a JSON document with every field as the message.
    alert = json.loads(payload["message"])
    assert alert["kind"] == "alert" and alert["id"] == delivery_id
    assert alert["key"] == "hit-1-chat" and alert["channel"] == "chat"
    assert (alert["rule"], alert["severity"]) == ("troop-movements", "urgent")
    assert alert["terms"] == ["troops", "soldiers", "frontier"]
    assert SNIPPET in alert["snippet"] and alert["link"] == LINK and alert["feed"] == "wire"
    assert alert["story"]["sources"] == 1
    assert delivery(store, delivery_id)["status"] == "sent"


def test_failed_delivery_is_retried_with_backoff_and_sent_once(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    [delivery_id] = seed(store, clock, ["chat"])
    channels = channels_for({"chat": webhook.url()})
    start = clock()
    webhook.fail()

    assert deliver(store, channels, clock) == (0, 1)
    row = delivery(store, delivery_id)
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["next_attempt_at"] == stamp(start + timedelta(seconds=RETRY_MIN))
    assert row["last_error"] == "apprise reported failure"
    assert webhook.counts() == (0, 1)

    # Not due yet: nothing is attempted, even one second before the retry time.
    clock.advance(RETRY_MIN - 1)
    assert deliver(store, channels, clock) == (0, 0)
    assert webhook.counts() == (0, 1)

    # Due, still failing: the delay doubles.
    clock.advance(1)
    assert deliver(store, channels, clock) == (0, 1)
    row = delivery(store, delivery_id)
    assert row["attempts"] == 2
    assert row["next_attempt_at"] == stamp(clock() + timedelta(seconds=2 * RETRY_MIN))
    assert webhook.counts() == (0, 2)

    # The receiver recovers; once the retry is due the alert goes out, exactly once.
    webhook.fail(False)
    clock.advance(2 * RETRY_MIN)
    assert deliver(store, channels, clock) == (1, 0)
    row = delivery(store, delivery_id)
    assert row["status"] == "sent"
    assert row["attempts"] == 3
    assert row["sent_at"] == stamp(clock())
    assert row["last_error"] is None

    clock.advance(hours=24)
    assert deliver(store, channels, clock) == (0, 0)
    assert webhook.counts() == (1, 2)
    assert [b["title"] for b in webhook.bodies] == [f"[troop-movements] {TITLE}"]


def test_a_failing_channel_does_not_block_the_others(
    store: Store, clock: Clock, webhook: Webhook, smtp_server: SmtpServer
) -> None:
    ids = seed(store, clock, ["mail", "chat", "pager"])
    seed(
        store,
        clock,
        ["chat"],
        uid="wire-0002",
        title="Soldiers seen at the frontier",
        summary="Farmers near Kharkiv reported soldiers digging trenches along the frontier.",
    )
    channels = channels_for({"mail": smtp_server.url(), "chat": webhook.url()})
    smtp_server.stop()  # the mail server is down; "pager" is not configured at all

    assert deliver(store, channels, clock) == (2, 2)

    mail, chat, pager = (delivery(store, i) for i in ids)
    assert chat["status"] == "sent"
    assert mail["status"] == pager["status"] == "pending"
    assert mail["attempts"] == pager["attempts"] == 1
    assert mail["last_error"] == "apprise reported failure"
    assert pager["last_error"] == "channel 'pager' is not configured"
    assert len(webhook.bodies) == 2
    assert store.counts()["sent"] == 2
    assert store.counts()["pending"] == 2

    # The mail server comes back: the waiting alert goes out at its next retry, once.
    smtp_server.start()
    clock.advance(RETRY_MIN)
    assert deliver(store, channels, clock) == (1, 1)
    assert delivery(store, ids[0])["status"] == "sent"
    [message] = smtp_server.messages
    assert TITLE in message["Subject"]
    assert len(webhook.bodies) == 2


def test_channel_password_never_logged_or_stored(
    store: Store, clock: Clock, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cretpass"
    url = webhook.url("hook", userinfo=f"alerts:{secret}")
    ids = seed(store, clock, ["chat"])
    channels = channels_for({"chat": url})
    webhook.fail()

    assert deliver(store, channels, clock) == (0, 1)
    [failed] = store.db.query("SELECT last_error FROM deliveries WHERE id = ?", ids)
    assert failed["last_error"] and secret not in failed["last_error"]
    webhook.fail(False)
    clock.advance(RETRY_MIN)
    assert deliver(store, channels, clock) == (1, 0)

    # The password was really used (HTTP basic auth)...
    [request] = webhook.received
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"alerts:{secret}".encode()
    ).decode("ascii")
    # ...and shows up nowhere else.
    assert secret not in channels["chat"].shown
    assert any("delivery_failed" in r.getMessage() for r in caplog.records)
    leaks = [f"{r.name}: {r.getMessage()}" for r in caplog.records if secret in r.getMessage()]
    assert leaks == []
    assert secret not in caplog.text  # formatted records, tracebacks included
    [row] = store.db.query("SELECT last_error FROM deliveries WHERE id = ?", ids)
    assert row["last_error"] is None  # cleared when sent; the failure's text was checked above


def test_unusable_channel_url_is_reported_without_its_secret() -> None:
    channels, errors = build_channels(
        (ChannelConfig("pager", "nosuchscheme://ops:s3cretpass@pager.example.org/"),)
    )
    assert channels == {}
    [error] = errors
    assert "pager" in error
    assert "s3cretpass" not in error
