"""Story clustering of what first polls stored without a story, between the polls.

A new feed's first poll (a baseline) alerts nothing of its own, and clustering is most
of what storing it costs: its articles are stored at once and put into their stories
here, a step at a time on the event loop, giving way to polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from monitor.errors import StorageError
from monitor.models import AlertPolicy, PollResult
from monitor.store.interface import PollStore
from monitor.stories import CLUSTER_BATCH, Vocabulary

if TYPE_CHECKING:
    from monitor.pipeline import PollContext

# The name these log lines had when this was part of the pipeline (log filters use it).
log = logging.getLogger("monitor.pipeline")


async def drain_backlog(ctx: PollContext, policies: Mapping[str, AlertPolicy] | None) -> int:
    """Cluster what first polls left waiting until now (:func:`cluster_backlog`; what
    they store meanwhile came in with the caller's articles, and waits), the event loop
    going on between steps; the deliveries made (alerts held for more sources). A
    failure is logged and the caller goes on: its articles must be stored anyway."""
    made = 0
    try:
        upto = ctx.store.last_pending()
        while upto:
            done, deliveries = cluster_backlog(ctx, policies, upto=upto)
            made += len(deliveries)
            if done < CLUSTER_BATCH:
                break
            await asyncio.sleep(0)
    except Exception as exc:  # the database's trouble, or a bug
        _cluster_failed(exc, "(the poll goes on; retried by the next)")
    return made


def _cluster_failed(exc: Exception, then: str) -> None:
    if isinstance(exc, StorageError):
        log.warning("stories_cluster_failed error=%s %s", exc, then)
    else:
        log.exception("stories_cluster_bug %s", then)


def cluster_backlog(
    ctx: PollContext,
    policies: Mapping[str, AlertPolicy] | None,
    limit: int = CLUSTER_BATCH,
    upto: int | None = None,
) -> tuple[int, list[int]]:
    """One step of story clustering for the articles a first poll stored without a story
    (:meth:`PollStore.cluster_pending`): (articles placed, deliveries created). The word
    rarity is refreshed as polls refresh it."""
    done, deliveries = ctx.store.cluster_pending(
        ctx.now(),
        limit=limit,
        upto=upto,
        policies=policies,
        quiet=ctx.story_quiet,
        vocabulary=ctx.vocabulary,
        storm=ctx.storm,
    )
    if done and ctx.vocabulary.stale(done):
        refresh_vocabulary(ctx.store, ctx.vocabulary)
    return done, deliveries


class Backlog:
    """Story clustering of the articles first polls store without a story (their
    backlog alerts nothing of its own, and clustering is most of what storing costs):
    :func:`cluster_backlog` a step at a time on the event loop, like the polls (the
    store's connection is not shared): back to back when no poll is in flight, a small
    step when nothing else was ready to run, and at least one step every ``every``
    seconds while polls keep coming. A start with hundreds of new feeds polls them all
    first, and a busy daemon still catches up (a step is about 0.1 s). A poll that
    stores articles which may alert clusters what waits first (:func:`drain_backlog`).
    Cancelled, it stops between steps (each is one transaction): what is left is
    clustered after the next start."""

    def __init__(
        self,
        every: float = 1.0,
        pause: float = 0.05,
        idle: float = 0.0005,
        small: int = 20,
        batch: int = CLUSTER_BATCH,
    ) -> None:
        #: Seconds between steps at least, and between looks while polls are in flight;
        #: a loop that ran something else for longer than ``idle`` seconds when it was
        #: yielded to is busy; articles of a step taken between polls, and of any other.
        self.every, self.pause, self.idle = every, pause, idle
        self.small, self.batch = small, batch
        #: Feed polls in flight (see polled); set when articles may be waiting (at first,
        #: for what an earlier run left, and by a poll that left some).
        self.polling = 0
        self.waiting = asyncio.Event()
        self.waiting.set()
        #: When the last step ended (the pace holds across wake-ups).
        self.last = -math.inf

    async def polled(self, poll: Awaitable[PollResult]) -> PollResult:
        """Await a poll (:func:`poll_feed`), counted as in flight meanwhile, and have
        what it left without a story clustered."""
        self.polling += 1
        try:
            result = await poll
        except BaseException:
            self.waiting.set()  # it may have stored a backlog before it failed
            raise
        finally:
            self.polling -= 1
        if result.unclustered:
            self.waiting.set()
        return result

    async def run(
        self,
        context: Callable[[], PollContext | None],
        policies: Callable[[], Mapping[str, AlertPolicy] | None],
        delivered: Callable[[], None],
        stop: asyncio.Event,
    ) -> None:
        """Until ``stop`` is set: cluster what is waiting with the current ``context``
        and rules' ``policies``; ``delivered()`` when a step made deliveries."""
        while not stop.is_set():
            await self.waiting.wait()
            began, placed = time.monotonic(), 0
            while not stop.is_set():
                ctx = context()
                if ctx is None:  # not polling yet
                    await asyncio.sleep(self.pause)
                    continue
                limit = self.batch
                if self.polling and time.monotonic() - self.last < self.every:
                    # Polls first: a small step only if nothing else was ready to run.
                    mark = time.monotonic()
                    await asyncio.sleep(0)
                    if time.monotonic() - mark > self.idle:
                        await asyncio.sleep(self.pause)
                        continue
                    limit = self.small
                try:
                    done, deliveries = cluster_backlog(ctx, policies(), limit)
                except Exception as exc:  # the database's trouble, or a bug: not fatal
                    _cluster_failed(exc, "(retried in a minute)")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 60)
                    continue
                self.last = time.monotonic()
                placed += done
                if deliveries:
                    delivered()
                if done < limit:
                    self.waiting.clear()  # no await since the step: nothing missed
                    break
                await asyncio.sleep(0)
            if placed:
                log.info(
                    "stories_clustered articles=%d seconds=%.1f (first polls' backlogs)",
                    placed,
                    time.monotonic() - began,
                )


def refresh_vocabulary(store: PollStore, vocabulary: Vocabulary) -> None:
    """Word rarity from the newest article of each recent story; the stored index keys
    rebuilt if the common words moved a lot (a new database's first estimates)."""
    if vocabulary.refresh_words(store.recent_story_words(vocabulary.SAMPLE)):
        changed = store.rekey_stories(vocabulary)
        log.info("stories_rekeyed changed=%d common_words=%d", changed, len(vocabulary.common))
