"""Poll one feed: fetch -> parse -> dedup -> match -> store. The only place that knows
the order of the steps; the stages themselves never import each other.

Validators (ETag / Last-Modified) are saved only after the articles are stored, so a
crash mid-poll makes the next poll fetch the whole feed again rather than skip items.
After each poll the feed's state (errors, Retry-After window, permanent redirect, next
poll) is stored and the operator is told about failing, silent or stopped feeds, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from monitor.backlog import drain_backlog, refresh_vocabulary
from monitor.errors import FeedError, StorageError
from monitor.health import feed_health
from monitor.match import Matcher
from monitor.models import (
    Article,
    FeedConfig,
    FeedState,
    FetchResult,
    Hit,
    Matched,
    PollResult,
)
from monitor.schedule import cache_hint, next_poll, rss_ttl
from monitor.store.interface import PollStore
from monitor.stories import DEFAULT_QUIET, Vocabulary
from monitor.text import mask_url, stamp

log = logging.getLogger(__name__)

#: Ids of a feed's newest stored articles sent with its body to be parsed, so that only
#: the others are matched (a feed lists far fewer items than this, usually).
KNOWN_UIDS = 1000

#: fetch(url, etag=..., last_modified=...) -> FetchResult; raises FeedError.
FetchFunction = Callable[..., Awaitable[FetchResult]]
#: parse(feed name, url, body, headers) -> articles; raises FeedError.
ParseFunction = Callable[[str, str, bytes, Mapping[str, str]], Awaitable[list[Article]]]
#: parse_matched(feed name, url, body, headers, matcher, known uids) -> articles with
#: their hits (None: not matched); raises FeedError. See ParsePool.parse_matched.
ParseMatchedFunction = Callable[
    [str, str, bytes, Mapping[str, str], Matcher, frozenset[str]], Awaitable[Matched]
]


@dataclass(frozen=True)
class PollContext:
    """Everything a poll needs besides the feed: built once by the daemon."""

    store: PollStore
    fetch: FetchFunction
    parse: ParseFunction
    default_channels: Sequence[str]
    now: Callable[[], datetime]
    operator_channels: Sequence[str] = ()
    health_failures: int = 5
    health_silence: float = 0.0
    max_backoff: float = 6 * 3600.0
    #: Polls past the Retry-After check at once (fetching, parsing or storing): bounds the
    #: bodies and parsed articles held in memory when thousands of feeds fall due together
    #: (see :func:`in_flight`). None: unbounded.
    slots: asyncio.Semaphore | None = None
    #: How long a story stays open to new articles after its last one.
    story_quiet: timedelta = DEFAULT_QUIET
    #: Word rarity of recent articles for story clustering (the daemon refreshes it).
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    #: Store a new feed's first poll without alerts (a feed's own `baseline` wins).
    baseline: bool = False
    #: More alerts than this for one channel from one poll become one summary (0: off).
    storm: int = 0
    #: Counters for Prometheus (monitor.metrics.Metrics), if any.
    metrics: PollMetrics | None = None
    #: Parse and match in one step, off the event loop (used instead of ``parse``).
    parse_matched: ParseMatchedFunction | None = None


class PollMetrics(Protocol):
    def poll(self, outcome: str, seconds: float, size: int, new_items: int) -> None: ...
    def hit(self, rule: str, count: int = 1) -> None: ...


def in_flight(fetch_total: int, parse_workers: int) -> asyncio.Semaphore:
    """The ``slots`` for a daemon that fetches ``fetch_total`` feeds at once and parses
    with ``parse_workers`` processes: enough to keep both busy (every fetch slot used,
    a body waiting for each worker), no more. Without it every due feed's poll starts
    at once, and when fetching outruns parsing the fetched bodies queue in memory (peak
    RSS 266 MiB at 10,000 feeds; 88 MiB with the bound, and no slower)."""
    return asyncio.Semaphore(fetch_total + 2 * parse_workers)


async def poll_feed(feed: FeedConfig, matcher: Matcher, ctx: PollContext) -> PollResult:
    """Poll ``feed`` once. Never raises for feed problems: they are recorded and returned."""
    if ctx.slots is None:
        result = await _poll(feed, matcher, ctx)
    else:
        async with ctx.slots:
            result = await _poll(feed, matcher, ctx)
    if ctx.metrics is not None:
        ctx.metrics.poll(result.outcome, result.fetch_seconds, result.size, result.new_articles)
    return result


async def _poll(feed: FeedConfig, matcher: Matcher, ctx: PollContext) -> PollResult:
    state = ctx.store.feed_state(feed.name)
    # State belongs to a URL: if the config now points elsewhere, start afresh.
    same_url = state.url == mask_url(feed.url)  # the store keeps URLs masked
    skipped = _skipped(feed, state if same_url else None, ctx.now())
    if skipped is not None:
        return skipped
    moved = state.moved_to if same_url else None
    # A permanent redirect is followed directly, unless it would need the credentials of
    # the configured URL (which are never stored).
    url = moved if moved and "***@" not in moved else feed.url
    started = time.monotonic()
    fetched = 0.0
    try:
        result = await ctx.fetch(
            url,
            etag=state.etag if same_url else None,
            last_modified=state.last_modified if same_url else None,
        )
        fetched = time.monotonic() - started
        parsed, known = await _parse(feed, url, result, matcher, ctx)
    except StorageError:
        raise  # the database's trouble, not the feed's (the daemon logs poll_crashed)
    except Exception as exc:  # FeedError, or a bug in fetching or parsing
        failed = _failed(feed, _as_feed_error(exc, feed, url), state, ctx)
        return replace(failed, fetch_seconds=fetched or time.monotonic() - started)
    permanent = getattr(result, "permanent_url", None)
    # Said once per new target: a feed with credentials keeps its configured URL (the
    # stored one is masked), so its redirect is seen again at every poll.
    if permanent and permanent != url and mask_url(permanent) != moved:
        log.warning(
            "feed_moved feed=%s from=%s to=%s (permanent redirect; update the settings)",
            feed.name,
            mask_url(url),
            mask_url(permanent),
        )
    new, matched = _match_new(feed, parsed, known, matcher, ctx)
    unclustered = released = 0
    if matched:
        unclustered, released = await _store_matched(feed, state, len(new), matched, matcher, ctx)
    return _record_success(
        feed,
        state if same_url else None,
        result,
        permanent,
        PollResult(
            feed.name,
            "",
            entries=len(parsed),
            new_articles=len(new),
            hits=sum(len(hits) for _, hits in matched),
            size=len(result.content),
            fetch_seconds=fetched,
            unclustered=unclustered,
            released=released,
        ),
        ctx,
    )


def _as_feed_error(exc: Exception, feed: FeedConfig, url: str) -> FeedError:
    """``exc`` as this feed's error: a bug in fetching or parsing is logged with its
    traceback and still recorded on the feed (kind "bug")."""
    if isinstance(exc, FeedError):
        return exc
    log.error("poll_bug feed=%s url=%s", feed.name, mask_url(url), exc_info=exc)
    return FeedError(
        mask_url(url),
        f"unexpected {type(exc).__name__} while fetching or parsing; this is a bug "
        "(the log has the details: `poll_bug`)",
        kind="bug",
    )


def _skipped(feed: FeedConfig, state: FeedState | None, now: datetime) -> PollResult | None:
    """The result of a poll that does not fetch (``state``: the feed's, if it is still
    about its configured URL): a feed stopped for good, or inside a Retry-After window."""
    if state is None:
        return None
    if state.disabled:
        return PollResult(feed.name, "stopped", error=state.disabled, stopped=True)
    wait_until = state.retry_after_until
    if wait_until is not None and now < wait_until:
        # Never re-request inside a Retry-After window (a restart must not either).
        log.info("poll feed=%s outcome=waiting until=%s", feed.name, stamp(wait_until))
        return PollResult(feed.name, "waiting", next_poll=wait_until)
    return None


async def _parse(
    feed: FeedConfig, url: str, result: FetchResult, matcher: Matcher, ctx: PollContext
) -> tuple[Matched, frozenset[str]]:
    """The articles of a response, with their hits if matched while parsing, and the
    stored ids that were left unmatched."""
    if result.not_modified:
        return [], frozenset()
    if ctx.parse_matched is not None:
        # The articles stored already need no matching: most of a feed, usually.
        known = ctx.store.recent_uids(feed.name, KNOWN_UIDS)
        parsed = await ctx.parse_matched(
            feed.name, url, result.content, result.headers, matcher, known
        )
        return parsed, known
    articles = await ctx.parse(feed.name, url, result.content, result.headers)
    return [(article, None) for article in articles], frozenset()


def _match_new(
    feed: FeedConfig,
    parsed: Matched,
    known: frozenset[str],
    matcher: Matcher,
    ctx: PollContext,
) -> tuple[list[Article], list[tuple[Article, list[Hit]]]]:
    """The articles not stored yet, and each with its hits (routed to the default
    channels where the rule names none), logged."""
    found: dict[str, list[Hit] | None] = {}
    for article, article_hits in parsed:
        found.setdefault(article.uid, article_hits)  # unseen() keeps the first too
    # The known ids are stored: only the others need looking up.
    new = ctx.store.unseen(feed.name, [a for a, _ in parsed if a.uid not in known])
    matched: list[tuple[Article, list[Hit]]] = []
    for article in new:
        hits = found[article.uid]
        if hits is None:  # parsed without matching (ctx.parse)
            hits = matcher.match(article)
        hits = [replace(hit, channels=hit.channels or tuple(ctx.default_channels)) for hit in hits]
        for hit in hits:
            log.info(
                "hit rule=%s feed=%s terms=%s title=%r",
                hit.rule,
                feed.name,
                ",".join(hit.terms[:8]),
                article.title[:120],
            )
        matched.append((article, hits))
        if ctx.metrics is not None:
            for hit in hits:
                ctx.metrics.hit(hit.rule)
    return new, matched


async def _store_matched(
    feed: FeedConfig,
    state: FeedState,
    new: int,
    matched: list[tuple[Article, list[Hit]]],
    matcher: Matcher,
    ctx: PollContext,
) -> tuple[int, int]:
    """Store the new articles with their hits (and the deliveries they call for):
    (articles left for the backlog to cluster, deliveries released from it first)."""
    store = ctx.store
    hit_count = sum(len(hits) for _, hits in matched)
    # A feed polled successfully for the first time has a backlog: with baseline, it
    # is stored and matched, and alerts start with the next poll. (A feed whose URL
    # was changed is not new: its items are told apart by their ids as before.)
    first = state.last_success is None
    baseline = first and (feed.baseline if feed.baseline is not None else ctx.baseline)
    if baseline and hit_count:
        log.info("baseline feed=%s hits=%d (first poll: stored, not alerted)", feed.name, hit_count)
    released = 0
    if not baseline:
        # Stories form in the order articles arrive: what first polls left waiting
        # is clustered before these, which may alert (a copy waiting there would
        # otherwise be missed: a second alert for one story, or a held one).
        released = await drain_backlog(ctx, matcher.policies)
    store.save(
        matched,
        ctx.now(),
        policies=matcher.policies,
        quiet=ctx.story_quiet,
        vocabulary=ctx.vocabulary,
        baseline=baseline,
        storm=ctx.storm,
        cluster_later=True,
    )
    if baseline:
        return new, released  # alerts nothing: clustered after the poll
    if ctx.vocabulary.stale(new):
        refresh_vocabulary(store, ctx.vocabulary)
    return 0, released


def _record_success(
    feed: FeedConfig,
    state: FeedState | None,
    result: FetchResult,
    permanent: str | None,
    polled: PollResult,
    ctx: PollContext,
) -> PollResult:
    """Record a successful poll (``state``: the feed's, if still about its URL) with
    when to poll next, tell the operator what feed health calls for, and return
    ``polled`` completed."""
    at = ctx.now()
    # A 304 has no body: the <ttl> is the one its last full response gave.
    ttl = rss_ttl(result.content) if not result.not_modified else state.ttl if state else None
    upcoming = next_poll(
        at,
        interval=feed.interval,
        hint=cache_hint(result.headers, ttl, at),
        max_backoff=ctx.max_backoff,
    )
    outcome = "not-modified" if result.not_modified else "ok"
    ctx.store.record_fetch(
        feed.name,
        feed.url,
        at,
        outcome=outcome,
        etag=result.etag,
        last_modified=result.last_modified,
        next_poll=upcoming,
        moved_to=permanent,
        found_new=bool(polled.new_articles),
        ttl=ttl,
    )
    _tell_operator(feed, ctx.store.feed_state(feed.name), ctx)
    log.info(
        "poll feed=%s outcome=%s entries=%d new=%d hits=%d next=%s",
        feed.name,
        outcome,
        polled.entries,
        polled.new_articles,
        polled.hits,
        upcoming.isoformat(),
    )
    return replace(polled, outcome=outcome, next_poll=upcoming)


def _failed(feed: FeedConfig, exc: FeedError, state: FeedState, ctx: PollContext) -> PollResult:
    at = ctx.now()
    errors = state.consecutive_errors + 1
    retry_after: float | None = getattr(exc, "retry_after", None)
    gone = bool(getattr(exc, "gone", False))
    kind: str = getattr(exc, "kind", None) or "error"
    upcoming = next_poll(
        at,
        interval=feed.interval,
        errors=errors,
        retry_after=retry_after,
        max_backoff=ctx.max_backoff,
    )
    ctx.store.record_fetch(
        feed.name,
        feed.url,
        at,
        outcome="stopped" if gone else "error",
        error=exc.message,
        error_kind=kind,
        next_poll=None if gone else upcoming,
        retry_after_until=at + timedelta(seconds=retry_after) if retry_after else None,
        disabled=exc.message if gone else None,
    )
    _tell_operator(feed, ctx.store.feed_state(feed.name), ctx, newly_stopped=gone)
    log.warning(
        "poll feed=%s outcome=%s kind=%s errors=%d url=%s error=%r next=%s",
        feed.name,
        "stopped" if gone else "error",
        kind,
        errors,
        mask_url(feed.url),
        exc.message,
        "never" if gone else upcoming.isoformat(),
    )
    return PollResult(
        feed.name,
        "stopped" if gone else "error",
        error=str(exc),
        next_poll=None if gone else upcoming,
        stopped=gone,
    )


def _tell_operator(
    feed: FeedConfig, state: FeedState, ctx: PollContext, *, newly_stopped: bool = False
) -> None:
    silence = feed.silence if feed.silence is not None else ctx.health_silence
    decision = feed_health(
        feed.name,
        mask_url(feed.url),
        state,
        ctx.now(),
        failures=ctx.health_failures,
        silence=silence or None,
        newly_stopped=newly_stopped,
    )
    for notice in decision.notices:
        log.warning("notice kind=%s feed=%s %s", notice.kind, feed.name, notice.title)
        if ctx.operator_channels:
            ctx.store.add_notice(
                notice.kind,
                notice.subject,
                notice.title,
                notice.body,
                ctx.operator_channels,
                ctx.now(),
            )
    if decision.flags:
        ctx.store.set_feed_flags(feed.name, **decision.flags)
