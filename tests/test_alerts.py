"""Noise control and the outbox's life cycle, on a real Store, real apprise channels and a
real webhook receiver on 127.0.0.1, with an injected clock: baseline, realert windows,
storms, silences, quiet hours, digests, dead letters, `deliveries` and `silence`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Clock, Webhook, write_project

from monitor.cli import main
from monitor.config import load_settings
from monitor.deliver import Channel, build_channels, deliver_due
from monitor.errors import ConfigErrors
from monitor.models import AlertPolicy, Article, ChannelConfig, Hit, QuietHours, Template
from monitor.store import Store

RETRY = 30.0


def article(n: int, *, feed: str = "wire", title: str | None = None, link: str = "") -> Article:
    # Distinct events (their own names and figures), so each is a story of its own.
    words = f"alpha{n} bravo{n} charlie{n} delta{n} echo{n} foxtrot{n} golf{n} hotel{n}"
    return Article(
        feed=feed,
        uid=f"{feed}-{n}",
        title=title or f"Event {n}: {words}",
        link=link or f"https://news{n}.example.org/{n}",
        summary=f"{words} india{n} juliet{n} kilo{n} lima{n} mike{n} {n * 7} people.",
        content_hash=f"{feed}-{n}",
    )


def hit(rule: str = "sanctions", channels: Sequence[str] = ("chat",), **kw: Any) -> Hit:
    return Hit(
        rule=rule,
        rule_version="v1",
        severity=kw.pop("severity", "normal"),
        terms=("sanctions",),
        snippet="new sanctions were announced",
        channels=tuple(channels),
    )


def save(store: Store, clock: Clock, items: Sequence[tuple[Article, Sequence[Hit]]], **kw: Any):
    return store.save(list(items), clock(), **kw)


def channels_for(configs: Sequence[ChannelConfig]) -> dict[str, Channel]:
    channels, errors = build_channels(tuple(configs))
    assert errors == []
    return channels


def deliver(
    store: Store,
    channels: Mapping[str, Channel],
    clock: Clock,
    policies: Mapping[str, AlertPolicy] | None = None,
    **kw: Any,
) -> tuple[int, int]:
    return asyncio.run(
        deliver_due(
            store, channels, clock, policies=policies, retry_min=RETRY, retry_max=3600, **kw
        )
    )


def statuses(store: Store) -> dict[int, str]:
    return {r[0]: r[1] for r in store.db.execute("SELECT id, status FROM deliveries")}


def messages(webhook: Webhook) -> list[dict[str, Any]]:
    """The alerts the receiver accepted: apprise's json:// posts title and message."""
    return [b for b in webhook.bodies if isinstance(b, dict)]


# --- baseline -------------------------------------------------------------------------


def test_baseline_stores_the_first_poll_without_alerts(store: Store, clock: Clock) -> None:
    created = save(store, clock, [(article(1), [hit()]), (article(2), [hit()])], baseline=True)
    assert created == []
    muted = [r[0] for r in store.db.execute("SELECT muted FROM hits")]
    assert muted == ["baseline: the feed's first poll"] * 2
    # The next poll alerts as usual.
    clock.advance(60)
    assert len(save(store, clock, [(article(3), [hit()])])) == 1


# --- realert --------------------------------------------------------------------------


def test_realert_window_per_key_with_exponential_growth(store: Store, clock: Clock) -> None:
    policy = AlertPolicy(
        once_per_story=False, realert=3600, realert_key="feed", realert_max=4 * 3600
    )
    policies = {"sanctions": policy}

    def one(n: int, feed: str = "wire") -> int:
        return len(save(store, clock, [(article(n, feed=feed), [hit()])], policies=policies))

    assert one(1) == 1  # first alert: a window of 1h opens for feed "wire"
    clock.advance(minutes=30)
    assert one(2) == 0  # inside the window: stored, not alerted
    assert one(3, feed="other") == 1  # another key value has its own window
    reason = store.db.execute("SELECT muted FROM hits WHERE id = 2").fetchone()[0]
    assert reason.startswith("realert: feed wire was alerted at")
    clock.advance(minutes=31)  # 61 min after the first alert: window over, but soon after
    assert one(4) == 1  # ... so the window doubles to 2h
    clock.advance(minutes=119)
    assert one(5) == 0
    clock.advance(minutes=2)
    assert one(6) == 1  # back within one more window: 4h (the cap)
    clock.advance(hours=3, minutes=59)
    assert one(7) == 0
    clock.advance(hours=9)  # a long quiet spell resets it to 1h
    assert one(8) == 1
    clock.advance(minutes=61 + 120)  # more than twice the window later: stays 1h
    assert one(9) == 1
    window = store.db.execute("SELECT window FROM realerts WHERE value = 'wire'").fetchone()[0]
    assert window == 3600


# --- storm ----------------------------------------------------------------------------


def test_a_storm_from_one_poll_becomes_one_summary(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    items = [(article(n), [hit(channels=("chat", "mail"))]) for n in range(30)]
    created = save(store, clock, items, storm=10)
    assert len(created) == 2  # one summary per channel
    rows = store.deliveries(limit=100)
    assert sum(r.status == "batched" for r in rows) == 60
    channels = channels_for([ChannelConfig("chat", webhook.url())])
    assert deliver(store, channels, clock, only=("chat",)) == (1, 0)
    [body] = messages(webhook)
    assert "30" in body["title"] and "storm" in body["title"].lower()
    # A small poll stays one message per hit.
    clock.advance(60)
    assert len(save(store, clock, [(article(99), [hit()])], storm=10)) == 1


# --- silences -------------------------------------------------------------------------


def test_silences_mute_rule_feed_and_story_and_expire(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    channels = channels_for([ChannelConfig("chat", webhook.url())])
    store.add_silence("rule", "sanctions", clock() + timedelta(hours=2), clock(), "summit")
    save(store, clock, [(article(1), [hit("sanctions")]), (article(2), [hit("troops")])])
    assert deliver(store, channels, clock) == (1, 0)
    assert [m["title"].split("]")[0] for m in messages(webhook)] == ["[troops"]
    muted = store.db.execute("SELECT muted FROM hits WHERE rule = 'sanctions'").fetchone()[0]
    assert muted == "silenced: rule sanctions (silence #1)"

    # A feed silence, and a story silence (by the story of a stored article).
    store.add_silence("feed", "tass", clock() + timedelta(hours=6), clock())
    save(store, clock, [(article(3, feed="tass"), [hit("troops")])])
    story = store.db.execute("SELECT story_id FROM articles WHERE uid = 'wire-2'").fetchone()[0]
    store.add_silence("story", str(story), clock() + timedelta(days=2), clock())
    copy = article(2, feed="copies")  # the same event from another outlet
    copy = Article(**{**copy.__dict__, "link": "https://other.example.com/x"})
    save(store, clock, [(copy, [hit("troops-2")])])
    assert deliver(store, channels, clock) == (0, 0)
    assert len(messages(webhook)) == 1

    # Expired: alerts flow again.
    clock.advance(hours=3)
    save(store, clock, [(article(4), [hit("sanctions")])])
    assert deliver(store, channels, clock) == (1, 0)
    assert len(messages(webhook)) == 2
    assert [s.id for s in store.silences(clock())] == [3, 2]


# --- quiet hours and digests ----------------------------------------------------------


def test_quiet_hours_defer_non_urgent_alerts_and_release_one_digest(
    store: Store, webhook: Webhook
) -> None:
    clock = Clock(datetime(2026, 3, 2, 21, 30, tzinfo=UTC))  # 23:30 in Kyiv (UTC+2)
    quiet = QuietHours(time(22, 0), time(7, 0), "Europe/Kyiv")
    channels = channels_for([ChannelConfig("chat", webhook.url(), quiet_hours=quiet)])
    save(store, clock, [(article(n), [hit()]) for n in range(3)])
    save(store, clock, [(article(10), [hit("troops", severity="urgent")])])
    assert deliver(store, channels, clock) == (1, 0)  # the urgent one goes at once
    assert "[troops]" in messages(webhook)[0]["title"]
    assert list(statuses(store).values()).count("deferred") == 3

    clock.advance(hours=2)  # 01:30 local: still quiet, more arrive and wait too
    save(store, clock, [(article(20), [hit()])])
    assert deliver(store, channels, clock) == (0, 0)
    clock.advance(hours=5, minutes=29)  # 06:59 local
    assert deliver(store, channels, clock) == (0, 0)
    clock.advance(minutes=1)  # 07:00 local: one digest of the four
    assert deliver(store, channels, clock) == (1, 0)
    digest = messages(webhook)[1]
    assert "4" in digest["title"] and "quiet" in digest["title"].lower()
    assert list(statuses(store).values()).count("batched") == 4
    assert deliver(store, channels, clock) == (0, 0)


def test_rule_digest_on_a_cron_schedule(store: Store, webhook: Webhook) -> None:
    clock = Clock(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    policies = {"sanctions": AlertPolicy(once_per_story=False, digest="0 8,17 * * *")}
    channels = channels_for([ChannelConfig("chat", webhook.url())])
    save(store, clock, [(article(n), [hit()]) for n in range(5)], policies=policies)
    assert deliver(store, channels, clock, policies) == (0, 0)
    release = store.db.execute("SELECT DISTINCT release_at FROM deliveries").fetchall()
    assert release == [("2026-03-02T08:00:00Z",)]
    clock.advance(hours=2)
    assert deliver(store, channels, clock, policies) == (1, 0)
    [digest] = messages(webhook)
    assert "5" in digest["title"] and "sanctions" in digest["title"]
    # Hits after the digest wait for the next one (17:00).
    save(store, clock, [(article(9), [hit()])], policies=policies)
    clock.advance(hours=8, minutes=59)
    assert deliver(store, channels, clock, policies) == (0, 0)
    clock.advance(minutes=1)
    assert deliver(store, channels, clock, policies) == (1, 0)


def test_channel_digest_lets_urgent_alerts_through(store: Store, webhook: Webhook) -> None:
    clock = Clock(datetime(2026, 3, 2, 9, 10, tzinfo=UTC))
    channels = channels_for([ChannelConfig("chat", webhook.url(), digest="0 * * * *")])
    save(store, clock, [(article(1), [hit()]), (article(2), [hit("t", severity="urgent")])])
    assert deliver(store, channels, clock) == (1, 0)
    clock.advance(minutes=50)
    assert deliver(store, channels, clock) == (1, 0)
    titles = [m["title"] for m in messages(webhook)]
    assert titles[0].startswith("[t]") and "digest" in titles[1].lower()


# --- dead letters, `deliveries` -------------------------------------------------------


def test_a_delivery_failing_past_max_age_is_dead_and_the_operator_is_told(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    channels = channels_for(
        [ChannelConfig("chat", webhook.url("chat")), ChannelConfig("ops", webhook.url("ops"))]
    )
    [delivery_id] = save(store, clock, [(article(1), [hit()])])
    webhook.fail()
    told: list[int] = []

    def on_dead(item: Any, error: str) -> None:
        told.append(item.id)
        store.add_notice(
            "delivery-dead", "chat", f"delivery #{item.id} given up", error, ["ops"], clock()
        )

    for _ in range(8):  # retries for 2 days: 30s, 60s, ... capped at 1h
        deliver(store, channels, clock, only=("chat",), max_age=86400, on_dead=on_dead)
        clock.advance(hours=4)
    assert statuses(store)[delivery_id] == "dead"
    assert told == [delivery_id]
    webhook.fail(False)
    assert deliver(store, channels, clock, only=("ops",)) == (1, 0)
    assert "given up" in messages(webhook)[0]["title"]

    # Re-queued from the command line's store call: sent once the channel works.
    assert store.retry([], clock(), dead=True) == 1
    assert deliver(store, channels, clock, only=("chat",), max_age=86400) == (1, 0)
    assert statuses(store)[delivery_id] == "sent"


def test_every_delivery_has_an_idempotency_key(store: Store, clock: Clock) -> None:
    save(store, clock, [(article(1), [hit(channels=("chat", "mail"))])])
    store.add_notice("feed-failing", "wire", "t", "b", ["ops"], clock())
    keys = sorted(r[0] for r in store.db.execute("SELECT key FROM deliveries"))
    assert keys == ["hit-1-chat", "hit-1-mail", "notice-1-ops"]


# --- settings -------------------------------------------------------------------------


def test_channel_options_and_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "chat-token").write_text("s3cr3t\n")
    project = write_project(
        tmp_path / "p",
        channels={},
        extra={
            "channels": {
                "night": {
                    "url": "json://127.0.0.1:9/${credential:chat-token}",
                    "tags": ["desk"],
                    "format": "markdown",
                    "timezone": "Europe/Kyiv",
                    "quiet_hours": "22:00-07:00",
                    "digest": "0 8 * * mon-fri",
                    "template": {"title": "{{ severity }}: {{ title }}"},
                }
            }
        },
    )
    settings = load_settings(project.config, {"CREDENTIALS_DIRECTORY": str(creds)})
    [night] = settings.channels
    assert night.url == "json://127.0.0.1:9/s3cr3t"
    assert night.quiet_hours == QuietHours(time(22), time(7), "Europe/Kyiv")
    assert night.template == Template(title="{{ severity }}: {{ title }}")
    assert night.format == "markdown" and night.digest == "0 8 * * mon-fri"


def test_bad_channel_options_name_the_line(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        extra={
            "channels": {
                "night": {
                    "url": "json://127.0.0.1:9/${credential:missing}",
                    "quiet_hours": "late",
                    "timezone": "Mars/Olympus",
                    "digest": "every morning",
                    "template": {"title": "{{ title "},
                    "format": "pdf",
                }
            }
        },
    )
    with pytest.raises(ConfigErrors) as caught:
        load_settings(project.config, {})
    text = str(caught.value)
    for needle in (
        "credential missing",
        "quiet_hours",
        "Mars/Olympus",
        "cron",
        "template.title",
        "format",
    ):
        assert needle in text, needle
    assert "config.yaml:" in text


# --- CLI ------------------------------------------------------------------------------


def test_silence_and_deliveries_commands(tmp_path: Path, clock: Clock) -> None:
    project = write_project(tmp_path / "p", channels={"chat": "json://127.0.0.1:9/x"})
    store = Store(project.database)
    save(store, clock, [(article(1), [hit()])])
    story = store.db.execute("SELECT story_id FROM articles").fetchone()[0]
    store.close()
    run = CliRunner().invoke
    cfg = ["--config", str(project.config)]

    result = run(main, ["silence", "rule", "sanctions", "--for", "2h", "--reason", "noise", *cfg])
    assert result.exit_code == 0, result.output
    assert "Silence #1: rule sanctions until" in result.output
    assert run(main, ["silence", "story", str(story), "--for", "2d", *cfg]).exit_code == 0
    bad = run(main, ["silence", "rule", "nope", "--for", "2h", *cfg])
    assert bad.exit_code == 1 and "no rule named 'nope'" in bad.output and "sanctions" in bad.output
    assert run(main, ["silence", "feed", "nope", "--for", "2h", *cfg]).exit_code == 1
    assert run(main, ["silence", "rule", "sanctions", "--for", "soon", *cfg]).exit_code == 2
    listed = json.loads(run(main, ["silence", "list", "--json", *cfg]).output)
    assert [(s["kind"], s["reason"]) for s in listed] == [("story", ""), ("rule", "noise")]
    assert run(main, ["silence", "lift", "1", *cfg]).exit_code == 0
    assert run(main, ["silence", "lift", "1", *cfg]).exit_code == 1
    assert len(json.loads(run(main, ["silence", "list", "--json", *cfg]).output)) == 1

    rows = json.loads(run(main, ["deliveries", "--json", *cfg]).output)
    assert [(r["key"], r["status"], r["kind"]) for r in rows] == [
        ("hit-1-chat", "pending", "alert")
    ]
    shown = run(main, ["deliveries", "--status", "pending", *cfg]).output
    assert "hit-1-chat" in shown and "sanctions" in shown
    missing = run(main, ["deliveries", "retry", *cfg])
    assert missing.exit_code == 2 and "name delivery ids" in missing.output
    result = run(main, ["deliveries", *cfg, "retry", "1"])
    assert result.exit_code == 0 and "1 delivery queued again" in result.output


# --- hostile content end to end -------------------------------------------------------


def html_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element of an HTML document with its attributes, as a browser would see it."""
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Tags().feed(html)
    return found


HOSTILE_TITLE = "<script>alert(1)</script> @everyone {{7*7}}\r\nBcc: victim@example.org"
HOSTILE_TEXT = (
    "Troops moved. [click here](javascript:alert(1)) ![pixel](http://evil.example/p.png) "
    '<img src=x onerror="alert(2)"> <!channel> @here {% for x in range(9) %}loop{% endfor %} '
    "mailto://user:pass@evil.example json://evil.example/hook"
)


def test_hostile_article_arrives_neutralised_by_mail_chat_and_webhook(
    store: Store, clock: Clock, webhook: Webhook, smtp_server: Any
) -> None:
    hostile = Article(
        feed="wire",
        uid="evil-1",
        title=HOSTILE_TITLE,
        link="javascript:alert(3)",
        summary=HOSTILE_TEXT,
        content_hash="evil-1",
    )
    [*_] = save(
        store,
        clock,
        [
            (
                hostile,
                [
                    Hit(
                        rule="troops",
                        rule_version="v1",
                        severity="urgent",
                        terms=("troops",),
                        snippet=HOSTILE_TEXT,
                        channels=("mail", "chat", "hook"),
                    )
                ],
            )
        ],
    )
    channels = channels_for(
        [
            ChannelConfig("mail", smtp_server.url()),
            ChannelConfig("chat", f"mmost://127.0.0.1:{webhook.port}/desktoken"),
            ChannelConfig("hook", webhook.url("hook")),
        ]
    )
    assert deliver(store, channels, clock) == (3, 0)

    # Email: no header injection, no live markup or javascript: link in the HTML part.
    [mail] = smtp_server.messages
    assert "victim@example.org" not in (mail["Bcc"] or "") and "\n" not in mail["Subject"]
    assert mail["Subject"].startswith("[troops] <script>")  # shown as text
    html = mail.get_body(preferencelist=("html",)).get_content()
    tags = html_tags(html)
    assert {t for t, _ in tags} <= {"div", "p", "b", "mark", "br", "a", "span", "strong"}
    for _, attrs in tags:
        assert not any(name.startswith("on") for name, _ in attrs)
        assert all(
            not (value or "").lower().startswith(("javascript:", "mailto:", "json:"))
            for _, value in attrs
        )
    assert "&lt;script&gt;" in html and "{{7*7}}" in html and "{% for x" in html
    assert "<mark>Troops</mark>" in html

    # Chat (Mattermost webhook): Markdown and mentions neutralised, template text literal.
    [chat] = [r.body for r in webhook.received if r.path == "/hooks/desktoken"]
    text = chat["text"]
    # Markdown syntax from the feed is escaped: no unescaped "](" link or "![" image.
    assert not re.search(r"(?<!\\)\]\(javascript:", text)
    assert not re.search(r"(?<!\\)!\[pixel", text)
    assert not re.search(r"(?<!\\)<", text)  # no raw angle bracket: no <!channel>, <script
    for raw in ("@everyone", "@here"):
        assert raw not in text, raw
    assert "{{7\\*7}}" in text and "49" not in text and "looploop" not in text
    assert "**Troops**" in text

    # JSON webhook: one valid document, every field there, the title on one line.
    [hook] = [r.body for r in webhook.received if r.path == "/hook"]
    assert "\n" not in hook["title"] and "\r" not in hook["title"]
    alert = json.loads(hook["message"])
    assert alert["snippet"] == HOSTILE_TEXT and alert["key"] == "hit-1-hook"
    assert alert["terms"] == ["troops"] and alert["severity"] == "urgent"


def test_apprise_config_file_channel_and_an_email_digest(
    store: Store, tmp_path: Path, webhook: Webhook, smtp_server: Any
) -> None:
    clock = Clock(datetime(2026, 3, 2, 7, 30, tzinfo=UTC))
    config = tmp_path / "apprise.yml"
    config.write_text(f"urls:\n  - {webhook.url('from-config')}\n")
    channels = channels_for(
        [
            ChannelConfig("team", "", config_file=str(config)),
            ChannelConfig("mail", smtp_server.url(), digest="0 8 * * *"),
        ]
    )
    assert channels["team"].shown == f"apprise config {config}"
    save(store, clock, [(article(n), [hit(channels=("team", "mail"))]) for n in range(3)])
    assert deliver(store, channels, clock) == (3, 0)  # team: one message per alert
    assert [r.path for r in webhook.received] == ["/from-config"] * 3
    assert smtp_server.messages == []
    clock.advance(minutes=30)
    assert deliver(store, channels, clock) == (1, 0)  # mail: the 08:00 digest
    [mail] = smtp_server.messages
    assert "digest: 3 alerts (channel mail)" in mail["Subject"]
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert all(f"Event {n}:" in html for n in range(3))


def test_rule_alert_keys_are_read_and_checked_with_their_line(tmp_path: Path) -> None:
    from monitor.match import load_rules

    (tmp_path / "a.yaml").write_text(
        "rules:\n"
        "  - name: good\n"
        "    any: [sanctions]\n"
        "    realert: 1h\n"
        "    realert_key: story\n"
        "    realert_max: 8h\n"
        '    digest: "0 8 * * mon-fri"\n'
        "    timezone: Europe/Kyiv\n"
        "    template: {title: '{{ rule }}: {{ title }}'}\n"
        "  - name: bad\n"
        "    any: [troops]\n"
        "    realert: soon\n"
        "    realert_key: colour\n"
        "    digest: daily\n"
        "    timezone: Nowhere/Land\n"
        "    template: {title: '{% if %}'}\n"
    )
    ruleset = load_rules(tmp_path)
    [good] = ruleset.rules
    assert good.policy == AlertPolicy(
        realert=3600,
        realert_key="story",
        realert_max=8 * 3600,
        digest="0 8 * * mon-fri",
        digest_timezone="Europe/Kyiv",
        template=Template(title="{{ rule }}: {{ title }}"),
    )
    errors = {(e.line, e.message.split(" ")[0]) for e in ruleset.errors}
    assert errors == {
        (12, "`realert`"),
        (13, "`realert_key`"),
        (14, "`digest`"),
        (15, "unknown"),
        (16, "`template.title`:"),
    }
    assert all(e.rule == "bad" for e in ruleset.errors)


def test_a_backlog_larger_than_a_page_drains_in_one_round(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    from monitor.deliver import DUE_PAGE

    count = DUE_PAGE + 20
    for n in range(count):  # separate polls, so no storm summary
        save(store, clock, [(article(n), [hit()])])
    channels = channels_for([ChannelConfig("chat", webhook.url())])
    assert deliver(store, channels, clock) == (count, 0)
    assert len(messages(webhook)) == count


def test_keys_never_collide_and_a_muted_story_alert_is_not_the_storys_alert(
    store: Store, clock: Clock
) -> None:
    # Channels "chat" and "chat-2", a follow-up at 2 sources: hit-1-chat-2 (the alert on
    # chat-2) and followup-1-2-chat (the follow-up on chat) are different keys.
    policies = {"sanctions": AlertPolicy(follow_up=(2,))}
    first = article(1)
    save(store, clock, [(first, [hit(channels=("chat", "chat-2"))])], policies=policies)
    copy = Article(**{**first.__dict__, "uid": "copy", "link": "https://other.example.com/1"})
    save(store, clock, [(copy, [])], policies=policies)
    keys = sorted(r[0] for r in store.db.execute("SELECT key FROM deliveries"))
    assert keys == ["followup-1-2-chat", "followup-1-2-chat-2", "hit-1-chat", "hit-1-chat-2"]

    # A story whose first hit falls in the rule's realert window is not "alerted": the
    # next copy, after the window, is its alert (and no follow-up comes first).
    policies = {"troops": AlertPolicy(realert=3600, follow_up=(2,))}
    save(store, clock, [(article(10), [hit("troops")])], policies=policies)
    event = article(11)
    save(store, clock, [(event, [hit("troops")])], policies=policies)  # muted: window
    clock.advance(hours=2)
    later = Article(**{**event.__dict__, "uid": "later", "link": "https://third.example.net/x"})
    created = save(store, clock, [(later, [hit("troops")])], policies=policies)
    steps = [
        store.db.execute("SELECT step FROM deliveries WHERE id = ?", [i]).fetchone()[0]
        for i in created
    ]
    assert steps == [0]


def test_a_channel_that_keeps_failing_ends_its_round_early(
    store: Store, clock: Clock, webhook: Webhook
) -> None:
    from monitor.deliver import GIVE_UP_AFTER

    for n in range(GIVE_UP_AFTER + 3):
        save(store, clock, [(article(n), [hit()])])
    channels = channels_for([ChannelConfig("chat", webhook.url())])
    webhook.fail()
    assert deliver(store, channels, clock) == (0, GIVE_UP_AFTER)
    attempts = [r[0] for r in store.db.execute("SELECT attempts FROM deliveries ORDER BY id")]
    assert attempts == [1] * GIVE_UP_AFTER + [0] * 3  # the rest wait, still due
    webhook.fail(False)
    assert deliver(store, channels, clock) == (3, 0)  # the untried ones go next round
