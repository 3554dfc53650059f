"""Poll one feed: fetch -> parse -> dedup -> match -> store. The only place that knows
the order of the steps; the stages themselves never import each other.

Validators (ETag / Last-Modified) are saved only after the articles are stored, so a
crash mid-poll makes the next poll fetch the whole feed again rather than skip items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

import httpx

from monitor.errors import FeedError
from monitor.fetch import fetch
from monitor.match import Matcher
from monitor.models import Article, FeedConfig, Hit, PollResult
from monitor.parse import parse_feed
from monitor.store import Store
from monitor.text import mask_url

log = logging.getLogger(__name__)


async def poll_feed(
    feed: FeedConfig,
    *,
    client: httpx.AsyncClient,
    store: Store,
    matcher: Matcher,
    default_channels: Sequence[str],
    now: Callable[[], datetime],
    timeout: float = 30.0,
) -> PollResult:
    """Poll ``feed`` once. Never raises for feed problems: they are recorded and returned."""
    state = store.feed_state(feed.name)
    # Validators belong to a URL: if the config now points elsewhere, start afresh.
    same_url = state["url"] == mask_url(feed.url)  # the store keeps URLs masked
    try:
        result = await fetch(
            client,
            feed.url,
            etag=state["etag"] if same_url else None,
            last_modified=state["last_modified"] if same_url else None,
            timeout=timeout,
        )
        if result.not_modified:
            store.record_fetch(feed.name, feed.url, now(), outcome="not-modified")
            log.info("poll feed=%s outcome=not-modified", feed.name)
            return PollResult(feed.name, "not-modified")
        articles = await asyncio.to_thread(
            parse_feed, feed.name, feed.url, result.content, result.headers
        )
    except FeedError as exc:
        store.record_fetch(feed.name, feed.url, now(), outcome="error", error=exc.message)
        log.warning(
            "poll feed=%s outcome=error url=%s error=%r", feed.name, mask_url(feed.url), exc.message
        )
        return PollResult(feed.name, "error", error=str(exc))

    new = store.unseen(feed.name, articles)
    matched: list[tuple[Article, list[Hit]]] = []
    hit_count = 0
    for article in new:
        hits = [
            replace(hit, channels=hit.channels or tuple(default_channels))
            for hit in matcher.match(article)
        ]
        for hit in hits:
            log.info(
                "hit rule=%s feed=%s terms=%s title=%r",
                hit.rule,
                feed.name,
                ",".join(hit.terms),
                article.title[:120],
            )
        hit_count += len(hits)
        matched.append((article, hits))
    store.save(matched, now())
    store.record_fetch(
        feed.name,
        feed.url,
        now(),
        outcome="ok",
        etag=result.etag,
        last_modified=result.last_modified,
    )
    log.info(
        "poll feed=%s outcome=ok entries=%d new=%d hits=%d",
        feed.name,
        len(articles),
        len(new),
        hit_count,
    )
    return PollResult(feed.name, "ok", entries=len(articles), new_articles=len(new), hits=hit_count)
