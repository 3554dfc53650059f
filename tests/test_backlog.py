"""Story clustering after the poll for a first poll's backlog (Store.cluster_pending,
monitor.backlog.Backlog): the same stories as clustering while storing, the same alerts, nothing
lost across a stop. Real SQLite files, the hand-labelled articles of test_stories."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock
from test_stories import LABELLED, VOCABULARY, article, hit

from monitor.backlog import Backlog, cluster_backlog
from monitor.models import AlertPolicy, Article, PollResult
from monitor.pipeline import PollContext
from monitor.store import Store
from monitor.stories import Vocabulary


def partition(store: Store) -> set[frozenset[str]]:
    """Each story as the set of its articles' uids."""
    groups: dict[int, set[str]] = {}
    for uid, story in store.db.execute("SELECT uid, story_id FROM articles"):
        assert story is not None, uid
        groups.setdefault(story, set()).add(uid)
    return {frozenset(g) for g in groups.values()}


def drain(store: Store, clock: Clock, **kw: Any) -> tuple[int, list[int]]:
    placed, created = 0, []
    while True:
        done, ids = store.cluster_pending(clock(), vocabulary=VOCABULARY, **kw)
        placed += done
        created += ids
        if not done:
            return placed, created


def by_feed(keys: list[str]) -> list[list[Article]]:
    """The labelled articles in file order, as polls of their feeds would bring them."""
    polls: list[list[Article]] = []
    for key in keys:
        item = article(key)
        if polls and polls[-1][0].feed == item.feed:
            polls[-1].append(item)
        else:
            polls.append([item])
    return polls


def test_clustered_later_the_backlog_forms_the_stories_clustering_at_once_forms(
    tmp_path: Path, clock: Clock
) -> None:
    keys = list(LABELLED)
    now, later = Store(tmp_path / "now.db"), Store(tmp_path / "later.db")
    start = clock()
    for store, defer in ((now, False), (later, True)):
        clock.current = start
        for articles in by_feed(keys):
            store.save(
                [(a, [hit()]) for a in articles],
                clock(),
                vocabulary=VOCABULARY,
                baseline=True,
                cluster_later=defer,
            )
            clock.advance(minutes=5)
    assert now.pending_stories() == 0
    assert later.pending_stories() == len(keys)
    assert later.db.execute("SELECT count(*) FROM stories").fetchone()[0] == 0
    assert later.stats(clock()).articles_without_story == len(keys)

    assert drain(later, clock, limit=7) == (len(keys), [])
    assert later.pending_stories() == 0
    assert partition(later) == partition(now)
    assert len(partition(now)) < len(keys)  # copies did join stories
    # The stories look the same: when they were seen, articles and outlets.
    shape = "SELECT title, first_seen, last_seen, articles, sources FROM stories ORDER BY id"
    assert later.db.execute(shape).fetchall() == now.db.execute(shape).fetchall()
    # And the index a later article is looked up in.
    index = "SELECT key, articles FROM story_postings ORDER BY key"
    assert later.db.execute(index).fetchall() == now.db.execute(index).fetchall()
    assert [r[0] for r in later.db.execute("SELECT muted FROM hits")] == [
        "baseline: the feed's first poll"
    ] * len(keys)


def test_a_backlog_article_corroborating_a_held_story_releases_its_alert_when_clustered(
    store: Store, clock: Clock
) -> None:
    policies = {"sanctions": AlertPolicy(min_sources=2)}
    # An established feed's article waits for a second outlet (min_sources).
    assert store.save([(article("a01"), [hit()])], clock(), policies=policies) == []
    clock.advance(minutes=5)
    # A new feed's first poll carries a copy: stored as a baseline, alerted by nobody yet.
    copy = article("a03")
    assert copy.feed != article("a01").feed
    made = store.save(
        [(copy, [hit()])], clock(), policies=policies, baseline=True, cluster_later=True
    )
    assert made == [] and store.due_deliveries(clock()) == []
    # Clustered, it brings the story its second outlet: the held hit goes out, the
    # baseline's own stays muted.
    clock.advance(seconds=30)
    placed, made = drain(store, clock, policies=policies)
    assert placed == 1 and len(made) == 1
    [pending] = store.due_deliveries(clock())
    assert pending.id == made[0] and pending.title == LABELLED["a01"]["title"]
    assert pending.sources == 2
    muted = "SELECT a.uid, h.muted FROM hits h JOIN articles a ON a.id = h.article_id"
    assert dict(store.db.execute(muted).fetchall()) == {
        "a01": None,
        "a03": "baseline: the feed's first poll",
    }


def test_a_later_article_clustered_first_is_joined_by_the_backlog(
    store: Store, clock: Clock
) -> None:
    # A backlog still waiting when an established feed's copy arrives: the copy starts
    # the story (and alerts, as it would have: a baseline hit is not a story's alert),
    # and the backlog article joins it when clustered.
    store.save([(article("a01"), [hit()])], clock(), baseline=True, cluster_later=True)
    clock.advance(minutes=5)
    assert len(store.save([(article("a02"), [hit()])], clock(), vocabulary=VOCABULARY)) == 1
    drain(store, clock)
    assert partition(store) == {frozenset({"a01", "a02"})}
    (first_seen, last_seen, count, sources) = store.db.execute(
        "SELECT first_seen, last_seen, articles, sources FROM stories"
    ).fetchone()
    assert (count, sources) == (2, 2)
    # The story began when the backlog article was seen, and was last seen with the copy.
    assert (first_seen, last_seen) == ("2026-03-02T09:00:00Z", "2026-03-02T09:05:00Z")


def test_a_pruned_article_leaves_the_backlog_too(store: Store, clock: Clock) -> None:
    store.save([(article("a01"), [])], clock(), baseline=True, cluster_later=True)
    store.db.execute("DELETE FROM articles")
    store.db.conn.commit()
    assert store.pending_stories() == 0
    assert store.cluster_pending(clock()) == (0, [])


# --- the daemon's part: Backlog on the event loop --------------------------------------


def backlog_context(store: Store, clock: Clock) -> PollContext:
    async def unused(*_: Any, **__: Any) -> Any:
        raise AssertionError("not polled here")

    return PollContext(store=store, fetch=unused, parse=unused, default_channels=(), now=clock)


def wait_for(condition: Callable[[], bool], deadline: float = 30.0) -> Callable[[], Any]:
    async def waiter() -> None:
        end = time.monotonic() + deadline
        while not condition():
            assert time.monotonic() < end, "condition not met before the deadline"
            await asyncio.sleep(0.005)

    return waiter


async def held_poll(release: asyncio.Event) -> PollResult:
    """A poll in flight until ``release`` is set."""
    await release.wait()
    return PollResult("wire", "ok")


def test_backlog_clusters_what_a_poll_left_and_what_an_earlier_run_left(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [k for k in LABELLED][:30]
    # An earlier run stored a backlog and stopped before clustering it.
    store.save([(article(k), []) for k in keys[:10]], clock(), baseline=True, cluster_later=True)
    ctx = backlog_context(store, clock)
    found: list[int] = []

    async def poll() -> PollResult:
        store.save(
            [(article(k), []) for k in keys[10:]], clock(), baseline=True, cluster_later=True
        )
        return PollResult("wire", "ok", new_articles=20, unclustered=20)

    async def main() -> None:
        backlog = Backlog()
        stop = asyncio.Event()
        calls: list[int] = []

        def context() -> PollContext | None:  # the daemon's is made once it polls
            calls.append(1)
            return ctx if len(calls) > 3 else None

        task = asyncio.create_task(
            backlog.run(context, lambda: None, lambda: found.append(1), stop)
        )
        await wait_for(lambda: store.pending_stories() == 0)()
        assert not backlog.waiting.is_set()
        # A poll that leaves articles without a story wakes it again.
        result = await backlog.polled(poll())
        assert result.unclustered == 20 and backlog.waiting.is_set()
        await wait_for(lambda: not backlog.waiting.is_set())()
        assert store.pending_stories() == 0 and backlog.polling == 0
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="monitor.pipeline"):
        asyncio.run(main())
    assert {u for g in partition(store) for u in g} == set(keys)
    assert found == []  # no deliveries: nothing was held
    assert "stories_clustered articles=" in caplog.text


def test_backlog_gives_way_to_polls_but_keeps_going(store: Store, clock: Clock) -> None:
    store.save([(article(k), []) for k in LABELLED], clock(), baseline=True, cluster_later=True)
    ctx = backlog_context(store, clock)
    steps: list[int] = []
    paced: list[float] = []  # when each step began while the poll was in flight

    def counted() -> Any:
        steps.append(store.pending_stories())
        if backlog.polling:
            paced.append(time.monotonic())
        return None

    # Never idle (a negative lag): the pace alone, 10 articles a step.
    backlog = Backlog(every=0.05, idle=-1.0, batch=10)

    async def main() -> None:
        stop = asyncio.Event()
        release = asyncio.Event()
        polling = asyncio.create_task(backlog.polled(held_poll(release)))
        await asyncio.sleep(0)
        assert backlog.polling == 1
        task = asyncio.create_task(backlog.run(lambda: ctx, counted, lambda: None, stop))
        # While a poll is in flight: a step of 10 at most every 50 ms, not all at once.
        await wait_for(lambda: len(steps) >= 3)()
        assert store.pending_stories() > 0
        release.set()
        await polling
        await wait_for(lambda: store.pending_stories() == 0)()
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert steps[0] == len(LABELLED) and steps[1] == len(LABELLED) - 10
    assert len(paced) >= 3
    assert all(b - a >= 0.05 for a, b in pairwise(paced)), paced


def test_a_backlog_article_is_compared_with_the_stories_open_when_it_was_seen(
    store: Store, clock: Clock
) -> None:
    store.save([(article("a01"), [hit()])], clock(), vocabulary=VOCABULARY)
    clock.advance(hours=1)
    store.save([(article("a02"), [])], clock(), baseline=True, cluster_later=True)
    # Clustered three days later, when a01's story has long been quiet (two days): a02
    # was seen while it was open, and joins it.
    clock.advance(days=3)
    assert drain(store, clock) == (1, [])
    assert partition(store) == {frozenset({"a01", "a02"})}


def test_a_stop_between_steps_leaves_the_rest_for_the_next_run(store: Store, clock: Clock) -> None:
    store.save([(article(k), []) for k in LABELLED], clock(), baseline=True, cluster_later=True)
    ctx = backlog_context(store, clock)

    async def first_run() -> None:
        backlog = Backlog(every=60.0, idle=-1.0, batch=10)  # one step, then a long wait
        stop = asyncio.Event()
        release = asyncio.Event()
        polling = asyncio.create_task(backlog.polled(held_poll(release)))
        await asyncio.sleep(0)
        task = asyncio.create_task(backlog.run(lambda: ctx, lambda: None, lambda: None, stop))
        await wait_for(lambda: store.pending_stories() < len(LABELLED))()
        task.cancel()  # a stop: the daemon cancels it
        await asyncio.gather(task, return_exceptions=True)
        release.set()
        await asyncio.gather(polling, return_exceptions=True)

    asyncio.run(first_run())
    assert store.pending_stories() == len(LABELLED) - 10  # one whole step, nothing half

    async def next_run() -> None:
        backlog = Backlog()
        stop = asyncio.Event()
        task = asyncio.create_task(backlog.run(lambda: ctx, lambda: None, lambda: None, stop))
        await wait_for(lambda: store.pending_stories() == 0)()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(next_run())
    assert {u for g in partition(store) for u in g} == set(LABELLED)


def test_a_poll_that_fails_after_storing_a_backlog_still_wakes_the_backlog() -> None:
    async def main() -> None:
        backlog = Backlog()
        backlog.waiting.clear()

        async def failing() -> PollResult:
            raise RuntimeError("the database went away after the save")

        with pytest.raises(RuntimeError):
            await backlog.polled(failing())
        assert backlog.waiting.is_set() and backlog.polling == 0

    asyncio.run(main())


def test_cluster_backlog_refreshes_word_rarity_as_polls_do(store: Store, clock: Clock) -> None:
    vocabulary = Vocabulary(minimum=5)
    ctx = replace(backlog_context(store, clock), vocabulary=vocabulary)
    store.save(
        [(article(k), []) for k in list(LABELLED)[:40]], clock(), baseline=True, cluster_later=True
    )
    assert vocabulary.sampled == 0
    assert cluster_backlog(ctx, None, limit=40) == (40, [])
    assert vocabulary.sampled > 0  # taken from the stories just made


def test_only_a_backlog_waits_for_its_stories(store: Store, clock: Clock) -> None:
    # cluster_later without baseline (a feed past its first poll, or one that opted out
    # of the baseline) clusters at once: its articles may alert, and alerts need stories.
    store.save([(article("a01"), [hit()])], clock(), cluster_later=True, vocabulary=VOCABULARY)
    clock.advance(minutes=5)
    made = store.save(
        [(article("a02"), [hit()])], clock(), cluster_later=True, vocabulary=VOCABULARY
    )
    assert made == []  # the story alerted once already
    assert store.pending_stories() == 0
    assert partition(store) == {frozenset({"a01", "a02"})}


def test_the_pace_holds_across_wake_ups(store: Store, clock: Clock) -> None:
    keys = list(LABELLED)
    ctx = backlog_context(store, clock)
    began: list[float] = []
    backlog = Backlog(every=0.2, idle=-1.0)  # never idle: the pace alone

    def policies() -> None:
        began.append(time.monotonic())

    async def main() -> None:
        stop = asyncio.Event()
        release = asyncio.Event()
        polling = asyncio.create_task(backlog.polled(held_poll(release)))
        await asyncio.sleep(0)
        store.save([(article(k), []) for k in keys[:5]], clock(), baseline=True, cluster_later=True)
        task = asyncio.create_task(backlog.run(lambda: ctx, policies, lambda: None, stop))
        await wait_for(lambda: store.pending_stories() == 0)()
        # A first poll leaves more at once: the next step still waits for its turn.
        store.save(
            [(article(k), []) for k in keys[5:9]], clock(), baseline=True, cluster_later=True
        )
        backlog.waiting.set()
        await wait_for(lambda: store.pending_stories() == 0)()
        release.set()
        await polling
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert len(began) == 2 and began[1] - began[0] >= 0.2, began
