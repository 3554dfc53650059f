"""The storage contract: what every backend of monitor.store.interface.Storage does, by
behaviour, through the Protocols alone (PollStore, Outbox, Admin, Upkeep, ReadSide).

Every test runs once per backend (BACKENDS). The tests call Protocol methods only: no
SQL, no connection, no knowledge of how a backend keeps its rows. What cannot be said
through the Protocols (damaging the database, holding its write lock from another
process, reading what it stored byte by byte) is one small adapter per backend, in the
first section. Time comes from the injected clock.

The read side (hits, stories, deliveries, silences, search) still returns dicts; its
assertions are kept together in the last section."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock
from test_alerts import article, hit

from monitor.errors import StorageBusy, StorageError
from monitor.models import AlertPolicy, Article, Digest, FeedState, Hit, PendingDelivery, Rule, Term
from monitor.policy import DIGEST_ITEMS
from monitor.store import BASELINE_MUTED, Store
from monitor.store.interface import Storage
from monitor.stories import Vocabulary, content_words
from monitor.text import mask_url

# --- backends: everything that is not said through the Protocols ----------------------


@dataclass(frozen=True)
class Backend:
    """How the tests reach one storage backend at ``location`` (a fresh folder's file;
    a backend without files maps it to a database of its own)."""

    name: str
    #: A writable store, made empty if nothing is there yet.
    open: Callable[[Path], Storage]
    #: A store that only reads (the CLI's reports); the database exists already.
    open_readonly: Callable[[Path], Storage]
    #: Everything the backend has written, as bytes (to look for what must never be
    #: stored).
    stored_bytes: Callable[[Path], bytes]
    #: Damage the (closed) database beyond use: the kinds a backend can suffer.
    damages: dict[str, Callable[[Path], None]]
    #: Another process holding the write lock while the block runs; the store under
    #: test waits for it only briefly.
    write_lock: Callable[[Storage, Path], AbstractContextManager[None]]


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal")]


def _sqlite_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in _sqlite_files(path) if p.exists())


def _sqlite_not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not a news-monitor database\n" * 200)


def _sqlite_scribbled(path: Path) -> None:
    """Its header and first pages intact (it opens), its last quarter overwritten."""
    data = path.read_bytes()
    pages = len(data) // 4096
    cut = 4096 * (pages - pages // 4)
    path.write_bytes(data[:cut] + b"\xff" * (len(data) - cut))


@contextlib.contextmanager
def _sqlite_write_lock(storage: Storage, path: Path) -> Iterator[None]:
    assert isinstance(storage, Store)
    storage.db.conn.execute("PRAGMA busy_timeout = 20")  # 20 ms, not the daemon's 5 s
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.close()


SQLITE = Backend(
    name="sqlite",
    open=Store,
    open_readonly=lambda path: Store(path, readonly=True),
    stored_bytes=_sqlite_bytes,
    damages={"not-a-database": _sqlite_not_a_database, "scribbled": _sqlite_scribbled},
    write_lock=_sqlite_write_lock,
)

#: One param per backend: a new backend passes this file by being added here.
BACKENDS = [pytest.param(SQLITE, id="sqlite")]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    assert isinstance(request.param, Backend)
    return request.param


@pytest.fixture
def location(tmp_path: Path) -> Path:
    return tmp_path / "db.sqlite"


@pytest.fixture
def storage(backend: Backend, location: Path) -> Iterator[Storage]:
    """An empty database of the backend."""
    opened = backend.open(location)
    try:
        yield opened
    finally:
        opened.close()


# --- helpers --------------------------------------------------------------------------

SECRET_URL = "https://reader:s3cret-pass@feeds.example.org/wire.xml"


def copy(n: int, outlet: str) -> Article:
    """Event ``n`` (test_alerts.article) as another outlet (feed and web site) carries
    it: one more source of the same story."""
    return article(n, feed=outlet, link=f"https://www.{outlet}.example/{n}")


def due(
    storage: Storage,
    clock: Clock,
    *,
    channels: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    after: int = 0,
) -> list[PendingDelivery]:
    """The due single alerts and notices (no digests), oldest first."""
    found = storage.due_deliveries(clock(), 1000, channels=channels, exclude=exclude, after=after)
    return [d for d in found if isinstance(d, PendingDelivery)]


def digests(storage: Storage, clock: Clock) -> list[Digest]:
    return [d for d in storage.due_deliveries(clock(), 1000) if isinstance(d, Digest)]


def due_ids(storage: Storage, clock: Clock) -> list[int]:
    return [d.id for d in storage.due_deliveries(clock(), 1000)]


def rule(name: str, version: str) -> Rule:
    return Rule(
        name=name,
        condition=Term(name, (name,)),
        version=version,
        source=f'{{"name": "{name}", "version": "{version}"}}',
    )


def saved(
    storage: Storage,
    clock: Clock,
    items: Iterable[tuple[Article, Sequence[Hit]]],
    policy: AlertPolicy | None = None,
    *,
    baseline: bool = False,
    cluster_later: bool = False,
    storm: int = 0,
) -> list[int]:
    """``save`` at the clock's time; ``policy``: the policy of rule "sanctions"."""
    return storage.save(
        list(items),
        clock(),
        policies={"sanctions": policy} if policy else None,
        baseline=baseline,
        cluster_later=cluster_later,
        storm=storm,
    )


# --- PollStore: feeds' state ----------------------------------------------------------


def test_a_feed_never_polled_has_only_its_name(storage: Storage) -> None:
    assert storage.feed_state("wire") == FeedState("wire")
    assert storage.feeds() == []
    assert storage.broken_feeds(1) == set()


def test_failures_make_a_streak_that_a_success_ends(storage: Storage, clock: Clock) -> None:
    url = "https://feeds.example.org/wire.xml"
    for _ in range(3):
        storage.record_fetch(
            "wire", url, clock(), outcome="error", error="HTTP 502", error_kind="http"
        )
        clock.advance(60)
    state = storage.feed_state("wire")
    assert (state.consecutive_errors, state.last_error, state.last_error_kind) == (
        3,
        "HTTP 502",
        "http",
    )
    assert state.last_outcome == "error" and state.last_success is None
    assert state.last_fetch == clock() - timedelta(seconds=60)
    assert storage.broken_feeds(3) == {"wire"} and storage.broken_feeds(4) == set()

    storage.record_fetch("wire", url, clock(), outcome="ok")
    state = storage.feed_state("wire")
    assert (state.consecutive_errors, state.last_error, state.last_error_kind) == (0, None, None)
    assert state.last_outcome == "ok" and state.last_success == clock()
    assert storage.broken_feeds(1) == set()
    assert storage.feeds() == [state]


def test_validators_are_kept_across_a_304_and_last_new_only_moves_on_news(
    storage: Storage, clock: Clock
) -> None:
    url = "https://feeds.example.org/wire.xml"
    first = clock()
    storage.record_fetch(
        "wire",
        url,
        first,
        outcome="ok",
        etag='"v1"',
        last_modified="Mon, 02 Mar 2026 08:00:00 GMT",
        found_new=True,
        ttl=15,
    )
    clock.advance(600)
    storage.record_fetch("wire", url, clock(), outcome="not-modified", ttl=15)
    state = storage.feed_state("wire")
    assert (state.etag, state.last_modified) == ('"v1"', "Mon, 02 Mar 2026 08:00:00 GMT")
    assert state.ttl == 15 and state.last_outcome == "not-modified"
    assert state.last_success == clock() and state.last_new == first
    # A failure keeps them too; new validators replace them.
    storage.record_fetch("wire", url, clock(), outcome="error", error="timeout")
    assert storage.feed_state("wire").etag == '"v1"'
    clock.advance(600)
    storage.record_fetch("wire", url, clock(), outcome="ok", etag='"v2"', found_new=True)
    state = storage.feed_state("wire")
    assert state.etag == '"v2"' and state.last_new == clock()
    assert state.last_modified == "Mon, 02 Mar 2026 08:00:00 GMT"


def test_credentials_in_feed_urls_are_never_stored(
    storage: Storage, backend: Backend, location: Path, clock: Clock
) -> None:
    moved = "https://reader:s3cret-pass@new.example.org/wire.xml"
    storage.record_fetch("wire", SECRET_URL, clock(), outcome="ok", moved_to=moved)
    state = storage.feed_state("wire")
    assert state.url == mask_url(SECRET_URL) and state.moved_to == mask_url(moved)
    assert "s3cret" not in repr(storage.feeds())
    assert b"s3cret" not in backend.stored_bytes(location)


def test_retry_after_and_next_poll_last_until_the_next_fetch(
    storage: Storage, clock: Clock
) -> None:
    url = "https://feeds.example.org/wire.xml"
    later = clock() + timedelta(hours=1)
    storage.record_fetch(
        "wire",
        url,
        clock(),
        outcome="error",
        error="HTTP 429",
        error_kind="http",
        next_poll=later,
        retry_after_until=later,
    )
    state = storage.feed_state("wire")
    assert state.retry_after_until == later and state.next_poll == later
    clock.advance(hours=1)
    storage.record_fetch("wire", url, clock(), outcome="ok")
    state = storage.feed_state("wire")
    assert state.retry_after_until is None and state.next_poll is None


def test_moved_to_stays_until_the_feed_is_polled_at_its_new_url(
    storage: Storage, clock: Clock
) -> None:
    old, new = "https://old.example.org/feed", "https://new.example.org/feed"
    storage.record_fetch("wire", old, clock(), outcome="ok", moved_to=new)
    assert storage.feed_state("wire").moved_to == new
    storage.record_fetch("wire", old, clock(), outcome="ok")  # still configured at the old URL
    assert storage.feed_state("wire").moved_to == new
    storage.record_fetch("wire", new, clock(), outcome="ok")  # the config followed it
    state = storage.feed_state("wire")
    assert state.url == new and state.moved_to is None


def test_feed_notice_flags_are_set_and_cleared(storage: Storage, clock: Clock) -> None:
    storage.record_fetch("wire", "https://feeds.example.org/w", clock(), outcome="ok")
    storage.set_feed_flags("wire", failing_alerted=1, quiet_alerted=1)
    state = storage.feed_state("wire")
    assert state.failing_alerted and state.quiet_alerted
    storage.set_feed_flags("wire", failing_alerted=0)
    state = storage.feed_state("wire")
    assert not state.failing_alerted and state.quiet_alerted


# --- PollStore: what is new -----------------------------------------------------------


def test_unseen_drops_stored_articles_and_repeats_within_one_batch(
    storage: Storage, clock: Clock
) -> None:
    one, two, three = article(1), article(2), article(3)
    assert storage.unseen("wire", [one, two, one, three, two]) == [one, two, three]
    saved(storage, clock, [(one, []), (two, [])])
    assert storage.unseen("wire", [three, one, two]) == [three]
    # Per feed: the same id in another feed is another article.
    other = article(1, feed="other")
    assert storage.unseen("other", [other]) == [other]
    assert storage.unseen("wire", []) == []


def test_recent_uids_are_the_newest_of_one_feed(storage: Storage, clock: Clock) -> None:
    for n in range(1, 5):
        saved(storage, clock, [(article(n), [])])
        clock.advance(60)
    saved(storage, clock, [(article(9, feed="other"), [])])
    assert storage.recent_uids("wire", 2) == frozenset({"wire-3", "wire-4"})
    assert storage.recent_uids("wire", 10) == frozenset(f"wire-{n}" for n in range(1, 5))
    assert storage.recent_uids("nowhere", 10) == frozenset()


# --- PollStore: save ------------------------------------------------------------------


def test_save_alerts_each_hit_once_per_channel_with_idempotency_keys(
    storage: Storage, clock: Clock
) -> None:
    made = saved(
        storage,
        clock,
        [
            (article(1), [hit("sanctions", ("chat", "mail")), hit("troops", ("chat",))]),
            (article(2), []),
        ],
    )
    assert len(made) == 3
    pending = due(storage, clock)
    assert [d.id for d in pending] == sorted(made)
    assert {(d.rule, d.channel) for d in pending} == {
        ("sanctions", "chat"),
        ("sanctions", "mail"),
        ("troops", "chat"),
    }
    keys = [d.key for d in pending]
    assert all(keys) and len(set(keys)) == 3
    first = pending[0]
    assert (first.feed, first.title, first.link, first.step) == (
        "wire",
        article(1).title,
        article(1).link,
        0,
    )
    assert first.terms == ("sanctions",) and first.attempts == 0
    # The same articles again (a later poll): never stored, matched or alerted twice.
    assert saved(storage, clock, [(article(1), [hit()]), (article(2), [hit()])]) == []
    assert [d.key for d in due(storage, clock)] == keys
    assert storage.counts()["articles"] == 2 and storage.counts()["hits"] == 2


def test_save_is_one_transaction(storage: Storage, clock: Clock) -> None:
    def poll() -> Iterator[tuple[Article, Sequence[Hit]]]:
        yield article(1), [hit()]
        yield article(2), [hit()]
        raise RuntimeError("the poll broke off")

    with pytest.raises(RuntimeError, match="broke off"):
        storage.save(poll(), clock())
    assert storage.unseen("wire", [article(1), article(2)]) == [article(1), article(2)]
    assert storage.counts() == {"articles": 0, "hits": 0, "pending": 0, "sent": 0}
    assert storage.due_deliveries(clock()) == []
    # Nothing half-made stands in the way of the retried poll.
    assert len(saved(storage, clock, [(article(1), [hit()]), (article(2), [hit()])])) == 2


def test_a_story_is_alerted_once_across_outlets(storage: Storage, clock: Clock) -> None:
    [first] = saved(storage, clock, [(article(1), [hit()])])
    clock.advance(60)
    assert saved(storage, clock, [(copy(1, "reuters"), [hit()])]) == []
    assert saved(storage, clock, [(copy(1, "tass"), [hit()])]) == []
    [pending] = due(storage, clock)
    assert pending.id == first and pending.sources == 3 and len(pending.outlets) == 3
    # Another event is a story of its own, and alerts.
    assert len(saved(storage, clock, [(copy(2, "reuters"), [hit()])])) == 1
    assert storage.counts()["hits"] == 4


def test_min_sources_holds_the_alert_until_another_outlet_carries_the_story(
    storage: Storage, clock: Clock
) -> None:
    policy = AlertPolicy(min_sources=2)
    assert saved(storage, clock, [(article(1), [hit()])], policy) == []
    # Another feed of the same site does not corroborate.
    same_site = article(1, feed="wire-2", link=article(1).link)
    assert saved(storage, clock, [(same_site, [hit()])], policy) == []
    assert storage.due_deliveries(clock()) == []
    [made] = saved(storage, clock, [(copy(1, "reuters"), [hit()])], policy)
    [pending] = due(storage, clock)
    assert pending.id == made and pending.link == article(1).link  # the held first hit
    assert pending.sources == 2
    assert saved(storage, clock, [(copy(1, "tass"), [hit()])], policy) == []  # once


def test_follow_ups_go_out_as_the_story_reaches_more_sources(
    storage: Storage, clock: Clock
) -> None:
    policy = AlertPolicy(follow_up=(2, 3))
    outlets = ["wire", "reuters", "tass", "afp"]
    made = [saved(storage, clock, [(copy(1, outlet), [hit()])], policy) for outlet in outlets]
    assert [len(ids) for ids in made] == [1, 1, 1, 0]
    pending = due(storage, clock)
    assert [d.step for d in pending] == [0, 2, 3]
    # Each follow-up goes with the newest hit of the rule on the story.
    assert [d.link for d in pending] == [copy(1, o).link for o in outlets[:3]]
    assert len({d.key for d in pending}) == 3


def test_a_realert_window_mutes_repeats_of_its_key(storage: Storage, clock: Clock) -> None:
    policy = AlertPolicy(once_per_story=False, realert=3600, realert_key="feed")

    def alerts(n: int, feed: str = "wire") -> int:
        return len(saved(storage, clock, [(article(n, feed=feed), [hit()])], policy))

    assert alerts(1) == 1
    clock.advance(minutes=30)
    assert alerts(2) == 0  # inside the window of feed "wire"
    assert alerts(3, feed="other") == 1  # another value of the key
    clock.advance(minutes=31)
    assert alerts(4) == 1
    assert storage.counts()["hits"] == 4 and storage.delivery_counts() == {"pending": 3}


def test_a_storm_folds_each_channel_over_the_cap_into_digests(
    storage: Storage, clock: Clock
) -> None:
    items = [(article(n), [hit(channels=("chat", "mail"))]) for n in range(2 * DIGEST_ITEMS + 10)]
    items += [(article(n), [hit("troops", channels=("pager",))]) for n in (500, 501)]
    made = saved(storage, clock, items, storm=5)
    assert len(made) == 3 + 3 + 2  # chat and mail: 3 digests each; pager: under the cap
    assert sorted(d.channel for d in due(storage, clock)) == ["pager", "pager"]
    found = digests(storage, clock)
    assert sorted(d.channel for d in found) == ["chat"] * 3 + ["mail"] * 3
    chat = [d for d in found if d.channel == "chat"]
    assert [d.total for d in chat] == [DIGEST_ITEMS, DIGEST_ITEMS, 10]
    assert [len(d.items) for d in chat] == [d.total for d in chat]
    assert {(d.reason, d.label) for d in found} == {("storm", "wire")}
    listed = [item.title for d in chat for item in d.items]
    assert listed == [a.title for a, _ in items[: 2 * DIGEST_ITEMS + 10]]
    assert len({d.key for d in found}) == 6 and all(d.key for d in found)
    # No cap: one delivery per hit and channel.
    assert len(saved(storage, clock, [(article(n), [hit()]) for n in range(600, 607)])) == 7


def test_a_baseline_is_stored_without_alerts(storage: Storage, clock: Clock) -> None:
    items = [(article(1), [hit()]), (article(2), [hit()])]
    assert saved(storage, clock, items, baseline=True) == []
    assert storage.due_deliveries(clock()) == [] and storage.counts()["hits"] == 2
    assert storage.unseen("wire", [article(1)]) == []
    # Not the story's alert: a copy from a feed past its first poll alerts.
    clock.advance(60)
    [made] = saved(storage, clock, [(copy(1, "reuters"), [hit()])])
    assert [d.link for d in due(storage, clock)] == [copy(1, "reuters").link]
    assert [d.id for d in due(storage, clock)] == [made]


def test_a_baseline_copy_releases_the_held_hit_of_another_feed(
    storage: Storage, clock: Clock
) -> None:
    policy = AlertPolicy(min_sources=2)
    assert saved(storage, clock, [(article(1), [hit()])], policy) == []
    [made] = saved(storage, clock, [(copy(1, "reuters"), [hit()])], policy, baseline=True)
    [pending] = due(storage, clock)
    assert pending.id == made and pending.link == article(1).link


# --- PollStore: a baseline backlog clustered later ------------------------------------


def test_a_backlog_waits_for_its_stories_and_is_clustered_in_batches(
    storage: Storage, clock: Clock
) -> None:
    assert storage.last_pending() == 0
    assert storage.cluster_pending(clock()) == (0, [])
    backlog = [(copy(n, "reuters"), [hit()]) for n in range(1, 4)]
    assert saved(storage, clock, backlog, baseline=True, cluster_later=True) == []
    mark = storage.last_pending()
    assert mark > 0
    assert storage.unseen("reuters", [a for a, _ in backlog]) == []
    saved(storage, clock, [(copy(4, "reuters"), [])], baseline=True, cluster_later=True)
    assert storage.last_pending() > mark
    assert storage.cluster_pending(clock(), limit=2, upto=mark) == (2, [])
    assert storage.cluster_pending(clock(), upto=mark) == (1, [])
    assert storage.cluster_pending(clock(), upto=mark) == (0, [])
    assert storage.cluster_pending(clock()) == (1, [])
    assert storage.last_pending() == 0
    # Clustered, the backlog's articles are in their stories: a copy joins one (and, the
    # backlog's hits being no alerts, is the story's alert).
    [made] = saved(storage, clock, [(copy(1, "tass"), [hit()])])
    [pending] = due(storage, clock)
    assert pending.id == made and pending.sources == 2


def test_a_clustered_backlog_copy_releases_a_held_hit(storage: Storage, clock: Clock) -> None:
    policies = {"sanctions": AlertPolicy(min_sources=2)}
    assert saved(storage, clock, [(article(1), [hit()])], policies["sanctions"]) == []
    clock.advance(minutes=5)
    backlog = [(copy(1, "reuters"), [hit()])]
    assert saved(storage, clock, backlog, baseline=True, cluster_later=True) == []
    assert storage.due_deliveries(clock()) == []
    clock.advance(seconds=30)
    placed, made = storage.cluster_pending(clock(), policies=policies)
    assert placed == 1 and len(made) == 1
    [pending] = due(storage, clock)
    assert pending.id == made[0] and pending.link == article(1).link and pending.sources == 2


def test_notices_go_to_each_channel_with_their_text(storage: Storage, clock: Clock) -> None:
    channels = ["ops", "chat"]
    storage.add_notice("failing", "wire", "wire is failing", "HTTP 502 x3", channels, clock())
    pending = due(storage, clock)
    assert sorted(d.channel for d in pending) == ["chat", "ops"]
    assert {(d.rule, d.feed, d.title, d.notice) for d in pending} == {
        ("notice:failing", "wire", "wire is failing", "HTTP 502 x3")
    }
    other = storage.add_notice("quiet", "wire", "quiet", "", ["ops"], clock())
    assert other > 0 and len({d.key for d in due(storage, clock)}) == 3


def test_recent_texts_story_words_and_rekeying(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(n), []) for n in range(1, 4)])
    saved(storage, clock, [(copy(1, "reuters"), [])])
    texts = storage.recent_texts(2)
    assert len(texts) == 2 and texts[0].startswith(copy(1, "reuters").title)
    assert texts[1].startswith(article(3).title)
    words = list(storage.recent_story_words())
    assert len(words) == 3 and all(words)  # the newest article of each story
    common = Vocabulary()
    common.common = frozenset(w for found in words for w in found)
    assert storage.rekey_stories(common) == 4  # every sketched article
    assert storage.rekey_stories(common) == 0  # the same words again: nothing changes


# --- Outbox ---------------------------------------------------------------------------


def test_due_deliveries_oldest_first_with_filters(storage: Storage, clock: Clock) -> None:
    made = saved(storage, clock, [(article(n), [hit(channels=("chat", "mail"))]) for n in range(3)])
    assert due_ids(storage, clock) == sorted(made)
    assert [d.id for d in storage.due_deliveries(clock(), 2)] == sorted(made)[:2]
    chat = due(storage, clock, channels=["chat"])
    assert [d.channel for d in chat] == ["chat"] * 3
    mail = [d.id for d in due(storage, clock, exclude=["chat"])]
    assert mail == sorted(set(made) - {d.id for d in chat})
    assert due(storage, clock, channels=[]) == []
    cut = sorted(made)[2]
    assert [d.id for d in due(storage, clock, after=cut)] == sorted(made)[3:]
    # Not due before its time.
    assert storage.due_deliveries(clock() - timedelta(seconds=1)) == []


def test_a_sent_delivery_is_not_due_again(storage: Storage, clock: Clock) -> None:
    first, second = saved(storage, clock, [(article(1), [hit()]), (article(2), [hit()])])
    storage.mark_sent(first, clock())
    assert due_ids(storage, clock) == [second]
    assert storage.delivery_counts() == {"pending": 1, "sent": 1}
    assert storage.counts()["sent"] == 1


def test_a_failed_delivery_backs_off_and_dies_after_its_max_age(
    storage: Storage, clock: Clock
) -> None:
    [made] = saved(storage, clock, [(article(1), [hit()])])
    key = due(storage, clock)[0].key
    retry_at = clock() + timedelta(minutes=5)
    assert storage.mark_failed(made, "HTTP 500", retry_at, now=clock(), max_age=3600) is False
    assert storage.due_deliveries(clock()) == []
    clock.advance(minutes=5)
    [again] = due(storage, clock)
    assert again.id == made and again.attempts == 1 and again.key == key
    # Queued an hour ago: given up.
    clock.advance(minutes=55)
    assert storage.mark_failed(made, "HTTP 500", clock(), now=clock(), max_age=3600) is True
    clock.advance(days=1)
    assert storage.due_deliveries(clock()) == []
    assert storage.delivery_counts() == {"dead": 1}


def test_deferred_deliveries_become_a_digest_when_their_batch_is_due(
    storage: Storage, clock: Clock
) -> None:
    made = saved(storage, clock, [(article(n), [hit(channels=("chat",))]) for n in range(3)])
    [mail] = saved(storage, clock, [(article(9), [hit(channels=("mail",))])])
    batch = "digest:rule sanctions"
    storage.defer(made[0], batch, clock() + timedelta(hours=2))
    storage.defer(made[1], batch, clock() + timedelta(hours=1))  # the earliest wins
    storage.defer(made[2], batch, clock() + timedelta(hours=3))
    storage.defer(mail, "quiet-hours:mail", clock() + timedelta(hours=1))
    assert storage.due_deliveries(clock()) == []
    assert storage.release_batches(clock()) == 0
    clock.advance(hours=1)
    assert storage.release_batches(clock(), channels=["pager"]) == 0
    assert storage.release_batches(clock(), channels=["chat"]) == 1
    [digest] = digests(storage, clock)
    assert (digest.channel, digest.reason, digest.label, digest.total) == (
        "chat",
        "digest",
        "rule sanctions",
        3,
    )
    assert [i.id for i in digest.items] == made and digest.key
    assert storage.release_batches(clock(), channels=["chat"]) == 0
    assert storage.release_batches(clock()) == 1  # mail's quiet hours are over too
    assert {(d.channel, d.reason) for d in digests(storage, clock)} == {
        ("chat", "digest"),
        ("mail", "quiet-hours"),
    }
    storage.mark_sent(digest.id, clock())
    assert [d.channel for d in storage.due_deliveries(clock())] == ["mail"]


def test_a_postponed_delivery_waits(storage: Storage, clock: Clock) -> None:
    first, second = saved(storage, clock, [(article(1), [hit()]), (article(2), [hit()])])
    storage.postpone(first, clock() + timedelta(minutes=10))
    assert due_ids(storage, clock) == [second]
    storage.mark_sent(second, clock())
    storage.postpone(second, clock() + timedelta(minutes=10))  # sent: nothing to postpone
    assert storage.delivery_counts() == {"pending": 1, "sent": 1}
    clock.advance(minutes=10)
    assert due_ids(storage, clock) == [first]


def test_a_silence_mutes_waiting_deliveries_of_its_rule_feed_or_story(
    storage: Storage, clock: Clock
) -> None:
    sanctions, troops = saved(
        storage, clock, [(article(1), [hit("sanctions")]), (article(2), [hit("troops")])]
    )
    [tass] = saved(storage, clock, [(article(3, feed="tass"), [hit("troops")])])
    [story] = saved(storage, clock, [(article(4), [hit("troops")])])
    [deferred] = saved(storage, clock, [(article(5), [hit("sanctions")])])
    storage.defer(deferred, "digest:rule sanctions", clock() + timedelta(hours=1))
    assert storage.mute_silenced(clock()) == 0  # no silence
    until = clock() + timedelta(hours=2)
    storage.add_silence("rule", "sanctions", until, clock(), "summit")
    storage.add_silence("feed", "tass", until, clock())
    story_id = next(d.story_id for d in due(storage, clock) if d.id == story)
    storage.add_silence("story", str(story_id), until, clock())
    assert storage.mute_silenced(clock()) == 4
    assert due_ids(storage, clock) == [troops]
    assert storage.mute_silenced(clock()) == 0
    clock.advance(hours=1)
    assert storage.release_batches(clock()) == 0  # the muted one left its batch
    assert storage.delivery_counts() == {"pending": 1, "muted": 4}
    # Expired: later alerts flow again; the muted stay muted.
    clock.advance(hours=2)
    [later] = saved(storage, clock, [(article(6), [hit("sanctions")])])
    assert storage.mute_silenced(clock()) == 0
    assert due_ids(storage, clock) == [troops, later]
    assert sanctions < later and tass < later


# --- Admin ----------------------------------------------------------------------------


def test_retry_queues_named_deliveries_and_every_dead_one(storage: Storage, clock: Clock) -> None:
    made = saved(storage, clock, [(article(n), [hit()]) for n in range(4)])
    for delivery_id in made[:3]:
        assert storage.mark_failed(delivery_id, "gone", clock(), now=clock(), max_age=0)
    storage.mark_sent(made[3], clock())
    assert storage.due_deliveries(clock()) == []
    clock.advance(hours=1)
    assert storage.retry([made[0]], clock()) == 1
    assert due_ids(storage, clock) == [made[0]]
    # Its max age counts from the retry.
    assert storage.mark_failed(made[0], "x", clock(), now=clock(), max_age=60) is False
    assert storage.retry([], clock(), dead=True) == 2
    assert due_ids(storage, clock) == made[:3]
    assert storage.retry([made[3]], clock()) == 1  # a sent one, named: sent again
    assert storage.retry([], clock()) == 0 and storage.retry([10_000], clock()) == 0
    assert storage.delivery_counts() == {"pending": 4}


def test_a_silence_is_lifted_once(storage: Storage, clock: Clock) -> None:
    [made] = saved(storage, clock, [(article(1), [hit()])])
    silence = storage.add_silence("rule", "sanctions", clock() + timedelta(hours=1), clock())
    assert storage.lift_silence(silence, clock()) is True
    assert storage.lift_silence(silence, clock()) is False
    assert storage.lift_silence(silence + 100, clock()) is False
    assert storage.mute_silenced(clock()) == 0 and due_ids(storage, clock) == [made]


def test_a_feed_stopped_by_a_410_is_resumed(storage: Storage, clock: Clock) -> None:
    url = "https://feeds.example.org/wire.xml"
    for _ in range(2):
        storage.record_fetch("wire", url, clock(), outcome="error", error="HTTP 503")
    storage.record_fetch(
        "wire", url, clock(), outcome="stopped", error="HTTP 410", disabled="410 Gone"
    )
    assert storage.feed_state("wire").disabled == "410 Gone"
    assert storage.broken_feeds(100) == {"wire"}
    assert storage.resume_feed("wire") == "410 Gone"
    state = storage.feed_state("wire")
    assert state.disabled is None and state.next_poll is None and state.consecutive_errors == 0
    assert storage.broken_feeds(1) == set()
    assert storage.resume_feed("wire") is None and storage.resume_feed("nowhere") is None


def test_prune_keeps_what_waits_and_dry_run_counts_what_it_would_delete(
    storage: Storage, clock: Clock
) -> None:
    saved(storage, clock, [(article(1), [])])  # old, no hits: goes
    [sent] = saved(storage, clock, [(article(2), [hit()])])  # old, alerted: goes
    storage.mark_sent(sent, clock())
    [waiting] = saved(storage, clock, [(article(3), [hit()])])  # old, not sent yet: stays
    storage.add_notice("failing", "wire", "wire fails", "", ["ops"], clock())
    [notice] = [d.id for d in due(storage, clock) if d.rule == "notice:failing"]
    storage.mark_sent(notice, clock())
    clock.advance(days=9)
    [recent] = saved(storage, clock, [(article(4), [hit()])])  # recent: stays
    storage.mark_sent(recent, clock())
    clock.advance(days=1)

    def prune(dry_run: bool) -> dict[str, int]:
        return storage.prune(clock(), articles=5 * 86400.0, hits=5 * 86400.0, dry_run=dry_run)

    expected = {"hits": 1, "articles": 2, "notices": 1}
    assert prune(dry_run=True) == expected
    assert prune(dry_run=True) == expected  # it changed nothing
    assert storage.counts()["articles"] == 4
    assert prune(dry_run=False) == {**expected, "stories": 2}
    assert storage.counts() == {"articles": 2, "hits": 2, "pending": 1, "sent": 1}
    assert due_ids(storage, clock) == [waiting]
    # A feed that still lists a pruned item does not bring it back as new.
    assert storage.unseen("wire", [article(1), article(2), article(5)]) == [article(5)]
    assert prune(dry_run=True) == dict.fromkeys(expected, 0)


def test_vacuum_and_checkpoint_keep_everything(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(n), [hit()]) for n in range(5)])
    before = storage.counts()
    storage.vacuum()
    storage.checkpoint()
    assert storage.counts() == before and len(due_ids(storage, clock)) == 5


def test_catch_up_search_indexes_everything_unless_stopped(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(n), []) for n in range(5)])
    assert storage.unindexed() == 5
    assert storage.catch_up_search(lambda: True) == 0
    assert storage.catch_up_search() == 5
    assert storage.unindexed() == 0 and storage.catch_up_search() == 0


# --- Upkeep ---------------------------------------------------------------------------


def test_the_rules_recorded_last_are_the_active_ones(storage: Storage, clock: Clock) -> None:
    assert storage.active_rule_sources() == {}
    first = [rule("sanctions", "v1"), rule("troops", "v1")]
    storage.record_rules(first, clock())
    assert storage.active_rule_sources() == {r.name: (r.version, r.source) for r in first}
    storage.record_rules([rule("sanctions", "v2")], clock())
    assert storage.active_rule_sources() == {"sanctions": ("v2", rule("sanctions", "v2").source)}
    storage.record_rules([rule("sanctions", "v1")], clock())  # rolled back
    assert storage.active_rule_sources() == {"sanctions": ("v1", rule("sanctions", "v1").source)}
    storage.record_rules([], clock())
    assert storage.active_rule_sources() == {}


def test_the_search_index_catches_up_in_batches(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(n), []) for n in range(3)])
    assert storage.unindexed() == 3
    assert storage.index_search(batch=2) == 2 and storage.unindexed() == 1
    assert storage.index_search(batch=2) == 1 and storage.unindexed() == 0
    assert storage.index_search() == 0
    saved(storage, clock, [(article(9), [])])
    assert storage.unindexed() == 1


def test_prune_steps_are_short_and_let_others_write_between_them(
    storage: Storage, backend: Backend, location: Path, clock: Clock
) -> None:
    saved(storage, clock, [(article(n), []) for n in range(6)])  # the newest one stays
    clock.advance(days=10)
    other = backend.open(location)
    try:
        steps = []
        for step in storage.prune_steps(clock(), articles=86400.0, hits=86400.0, batch=2):
            steps.append(step)
            other.add_silence("rule", "x", clock() + timedelta(hours=1), clock())
    finally:
        other.close()
    assert [s["articles"] for s in steps if "articles" in s] == [2, 2, 1]
    total: Counter[str] = Counter()
    for step in steps:
        total.update(step)
    assert total == Counter({"articles": 5, "stories": 5})
    assert storage.counts()["articles"] == 1


def test_the_story_index_forgets_old_articles_in_steps(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(n), [hit()]) for n in range(1, 6)])
    clock.advance(seconds=1)
    saved(storage, clock, [(article(9), [hit()])])
    steps = list(storage.prune_story_index_steps(clock(), batch=2))
    assert all(0 < s <= 2 for s in steps) and sum(steps) == 5
    assert list(storage.prune_story_index_steps(clock(), batch=2)) == []
    # Forgotten, event 1 is not found again: its copy starts a story of its own.
    assert len(saved(storage, clock, [(copy(1, "reuters"), [hit()])])) == 1
    # Still indexed, event 9 is: its copy joins its story (alerted once).
    assert saved(storage, clock, [(copy(9, "reuters"), [hit()])]) == []


# --- errors: only StorageError (StorageBusy) leaves a method --------------------------


@dataclass(frozen=True)
class Scene:
    """A database with something for every write to act on."""

    delivery: int  # a pending alert on "chat"
    silence: int  # an active silence of feed "wire"


def furnish(storage: Storage, clock: Clock) -> Scene:
    now = clock()
    storage.record_rules([rule("sanctions", "v1")], now)
    storage.record_fetch(
        "gone", "https://gone.example.org/", now, outcome="stopped", disabled="410 Gone"
    )
    saved(storage, clock, [(article(1), [])])
    chat, mail = saved(storage, clock, [(article(2), [hit(channels=("chat", "mail"))])])
    storage.defer(mail, "digest:rule sanctions", now)
    saved(storage, clock, [(copy(3, "tass"), [hit()])], baseline=True, cluster_later=True)
    silence = storage.add_silence("feed", "wire", now + timedelta(days=30), now)
    clock.advance(days=10)
    return Scene(chat, silence)


def _common_words(storage: Storage) -> Vocabulary:
    common = Vocabulary()
    common.common = frozenset(content_words(article(2).summary))
    return common


#: One call of each write of the Protocols, on a furnished database.
WRITES: dict[str, Callable[[Storage, Scene, datetime], object]] = {
    "record_fetch": lambda s, _, now: s.record_fetch("wire", SECRET_URL, now, outcome="ok"),
    "set_feed_flags": lambda s, _, now: s.set_feed_flags("gone", failing_alerted=1),
    "save": lambda s, _, now: s.save([(article(7), [hit()])], now),
    "cluster_pending": lambda s, _, now: s.cluster_pending(now),
    "rekey_stories": lambda s, _, now: s.rekey_stories(_common_words(s)),
    "add_notice": lambda s, _, now: s.add_notice("k", "wire", "t", "b", ["ops"], now),
    "mark_sent": lambda s, scene, now: s.mark_sent(scene.delivery, now),
    "mark_failed": lambda s, scene, now: s.mark_failed(scene.delivery, "x", now),
    "defer": lambda s, scene, now: s.defer(scene.delivery, "digest:x", now),
    "postpone": lambda s, scene, now: s.postpone(scene.delivery, now),
    "release_batches": lambda s, _, now: s.release_batches(now),
    "mute_silenced": lambda s, _, now: s.mute_silenced(now),
    "retry": lambda s, scene, now: s.retry([scene.delivery], now),
    "add_silence": lambda s, _, now: s.add_silence("feed", "wire", now, now),
    "lift_silence": lambda s, scene, now: s.lift_silence(scene.silence, now),
    "resume_feed": lambda s, _, now: s.resume_feed("gone"),
    "prune": lambda s, _, now: s.prune(now, articles=3600.0, hits=3600.0),
    "vacuum": lambda s, _, now: s.vacuum(),
    "catch_up_search": lambda s, _, now: s.catch_up_search(),
    "record_rules": lambda s, _, now: s.record_rules([rule("troops", "v1")], now),
    "index_search": lambda s, _, now: s.index_search(),
    "prune_steps": lambda s, _, now: list(s.prune_steps(now, articles=3600.0, hits=3600.0)),
    "prune_story_index_steps": lambda s, _, now: list(s.prune_story_index_steps(now)),
}


@pytest.mark.parametrize("damage", ["not-a-database", "scribbled"])
def test_a_damaged_database_gives_storage_error_naming_it(
    backend: Backend, location: Path, clock: Clock, damage: str
) -> None:
    if damage not in backend.damages:
        pytest.skip(f"{backend.name} cannot be damaged this way")
    storage = backend.open(location)
    for n in range(40):
        saved(storage, clock, [(article(n), [hit()])])
    storage.close()
    backend.damages[damage](location)
    named = re.escape(str(location))
    try:
        damaged = backend.open(location)
    except StorageError as exc:  # found as it opens
        assert re.search(named, str(exc)), exc
        return
    try:  # else at the first use, of every kind
        with pytest.raises(StorageError, match=named):
            list(damaged.articles_since(None))
        with pytest.raises(StorageError, match=named):
            damaged.recent_uids("wire", 1000)
        with pytest.raises(StorageError, match=named):
            damaged.save([(article(99), [hit()])], clock())
    finally:
        damaged.close()


def test_a_missing_database_cannot_be_read(backend: Backend, location: Path) -> None:
    with pytest.raises(StorageError, match=re.escape(str(location))):
        backend.open_readonly(location)


@pytest.mark.parametrize("write", WRITES)
def test_a_database_locked_by_another_process_gives_storage_busy(
    backend: Backend, location: Path, clock: Clock, write: str
) -> None:
    storage = backend.open(location)
    try:
        scene = furnish(storage, clock)
        with backend.write_lock(storage, location), pytest.raises(StorageError) as refused:
            WRITES[write](storage, scene, clock())
        WRITES[write](storage, scene, clock())  # free again: it goes through
        assert isinstance(refused.value, StorageBusy), refused.value
    finally:
        storage.close()


def test_opening_an_up_to_date_database_waits_for_no_lock(
    backend: Backend, location: Path, clock: Clock
) -> None:
    # A command that only reads but opens for writing (prune --dry-run, feeds resume)
    # must not wait for a daemon that is writing.
    storage = backend.open(location)
    try:
        furnish(storage, clock)
        with backend.write_lock(storage, location):
            again = backend.open(location)
            try:
                assert again.counts()["articles"] > 0
            finally:
                again.close()
    finally:
        storage.close()


def test_a_busy_database_says_what_was_being_done(
    backend: Backend, location: Path, clock: Clock
) -> None:
    storage = backend.open(location)
    try:
        with backend.write_lock(storage, location), pytest.raises(StorageBusy) as refused:
            storage.save([(article(1), [hit()])], clock())
        assert "cannot store articles" in str(refused.value)
        assert str(location) in str(refused.value)
    finally:
        storage.close()


@pytest.mark.parametrize("write", list(WRITES))
def test_a_read_only_store_refuses_writes(
    backend: Backend, location: Path, clock: Clock, write: str
) -> None:
    storage = backend.open(location)
    scene = furnish(storage, clock)
    before = storage.counts(), storage.delivery_counts(), storage.feed_state("gone")
    storage.close()
    reader = backend.open_readonly(location)
    try:
        with pytest.raises(StorageError, match=re.escape(str(location))):
            WRITES[write](reader, scene, clock())
        # It still reads, and nothing changed.
        assert (reader.counts(), reader.delivery_counts(), reader.feed_state("gone")) == before
        assert len(reader.due_deliveries(clock())) == 1
    finally:
        reader.close()
    writer = backend.open(location)  # the same call is no mistake: it writes
    try:
        WRITES[write](writer, scene, clock())
    finally:
        writer.close()


# --- ReadSide (records soon: every dict-shaped assertion is here) ---------------------


def test_read_side_hits_say_why_they_were_held_or_not_alerted(
    storage: Storage, clock: Clock
) -> None:
    saved(storage, clock, [(article(1), [hit()])], baseline=True)
    realert = AlertPolicy(once_per_story=False, realert=3600, realert_key="feed")
    saved(storage, clock, [(article(2), [hit()])], realert)
    saved(storage, clock, [(article(3), [hit()])], realert)
    saved(storage, clock, [(article(4), [hit("troops")])])
    silence = storage.add_silence("rule", "troops", clock() + timedelta(hours=1), clock())
    storage.mute_silenced(clock())
    held = AlertPolicy(min_sources=2)
    saved(storage, clock, [(article(5), [hit()])], held)
    saved(storage, clock, [(article(6), [hit()])], held)
    saved(storage, clock, [(copy(6, "reuters"), [])], held)  # corroborated: released
    rows = {r.title: r for r in storage.hits(limit=None)}
    assert rows[article(1).title].muted == BASELINE_MUTED
    assert rows[article(2).title].muted is None
    assert rows[article(3).title].muted.startswith("realert: feed wire was alerted at")
    assert rows[article(4).title].muted == f"silenced: rule troops (silence #{silence})"
    assert rows[article(5).title].held and rows[article(5).title].muted is None
    assert not rows[article(6).title].held
    assert [r.rule for r in storage.hits(rule="troops")] == ["troops"]


def test_read_side_stories_count_their_sources(storage: Storage, clock: Clock) -> None:
    for outlet in ("wire", "reuters", "tass"):
        saved(storage, clock, [(copy(1, outlet), [hit()])])
    saved(storage, clock, [(article(2), [])])
    [story] = storage.stories(min_sources=2)
    assert (story.articles, story.sources, story.hits) == (3, 3, 3)
    assert len(story.outlets) == 3
    assert len(storage.stories()) == 2


def test_read_side_deliveries_show_their_state(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(n), [hit()]) for n in range(3)], storm=2)
    storage.add_silence("rule", "sanctions", clock() + timedelta(hours=1), clock())
    saved(storage, clock, [(article(9), [hit()])])
    storage.mute_silenced(clock())
    states = Counter((r.kind, r.status) for r in storage.deliveries())
    assert states == {("alert", "batched"): 3, ("digest", "pending"): 1, ("alert", "muted"): 1}
    [muted] = storage.deliveries(status="muted")
    assert muted.last_error.startswith("silenced: rule sanctions")


def test_read_side_silences_active_and_past(storage: Storage, clock: Clock) -> None:
    first = storage.add_silence("rule", "sanctions", clock() + timedelta(hours=1), clock(), "x")
    second = storage.add_silence("feed", "tass", clock() + timedelta(hours=3), clock())
    storage.lift_silence(first, clock())
    assert [s.id for s in storage.silences(clock())] == [second]
    assert [(s.id, s.active) for s in storage.silences(clock(), everything=True)] == [
        (second, True),
        (first, False),
    ]


def test_read_side_search_finds_indexed_articles(storage: Storage, clock: Clock) -> None:
    saved(storage, clock, [(article(1), [hit()]), (article(2), [])])
    assert storage.search("bravo1") == []  # not indexed yet
    storage.catch_up_search()
    [found] = storage.search("bravo1")
    assert found.link == article(1).link and "[bravo1]" in found.title
    assert found.rules == "sanctions"
    with pytest.raises(StorageError, match="cannot search"):
        storage.search("AND AND")
