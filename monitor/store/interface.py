"""What storage offers, one Protocol per consumer, and the records it returns.

The poll pipeline, the delivery loop, the read side (CLI commands, pages) and the admin
side each see only their Protocol, so a second backend implements these and nothing
else. Records are frozen; times are aware UTC datetimes; only StorageError and
StorageBusy (monitor.errors) leave a method. The records live in monitor.models, with
the others that cross module boundaries (pure deciders such as monitor.health read them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitor.models import (
    AlertPolicy,
    Article,
    Digest,
    FeedState,
    Hit,
    PendingDelivery,
    Rule,
)
from monitor.stories import Vocabulary
from monitor.text import stamp

# --- records of the read side ---------------------------------------------------------


@dataclass(frozen=True)
class HitRow:
    """A stored hit with its article, story and where it was sent."""

    id: int
    rule: str
    rule_version: str
    severity: str
    #: The rule's terms found in the article, and the passage that says why.
    terms: tuple[str, ...]
    snippet: str
    created_at: datetime
    #: Waiting for its story to have the rule's min_sources.
    held: bool
    #: Why it was stored without an alert (realert window, silence, baseline), if so.
    muted: str | None
    feed: str
    title: str
    link: str
    published: datetime | None
    story_id: int | None
    story_sources: int | None
    #: "channel:status" of each delivery, space-separated; None: none made.
    deliveries: str | None


@dataclass(frozen=True)
class StoryArticle:
    """One article of a story."""

    id: int
    feed: str
    #: The outlet (its site), what a story counts as a source.
    source: str
    title: str
    link: str
    seen_at: datetime
    #: The rules that hit it, space-separated; None: none.
    rules: str | None


@dataclass(frozen=True)
class StoryRow:
    """One story: an event carried by one or more outlets."""

    id: int
    title: str
    first_seen: datetime
    last_seen: datetime
    articles: int
    sources: int
    first_article_id: int | None
    #: The outlets, in the order they joined.
    outlets: tuple[str, ...]
    hits: int
    #: Its articles, oldest first (only when one story was asked for).
    articles_list: tuple[StoryArticle, ...] = ()


@dataclass(frozen=True)
class DeliveryRow:
    """One row of the outbox, with what it carries."""

    id: int
    key: str
    channel: str
    #: pending, deferred, batched, sent, dead or muted.
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    #: The digest batch a deferred delivery waits for, and when it is released.
    batch: str | None
    release_at: datetime | None
    #: The digest a batched delivery went out in.
    in_digest: int | None
    step: int
    #: alert, notice or digest.
    kind: str
    #: The rule, "notice:<kind>" or "digest:<reason>".
    what: str
    title: str


@dataclass(frozen=True)
class SilenceRow:
    """A time-boxed mute of a rule, a feed or a story."""

    id: int
    #: rule, feed or story.
    kind: str
    target: str
    until: datetime
    reason: str
    created_at: datetime
    lifted_at: datetime | None
    active: bool


@dataclass(frozen=True)
class SearchRow:
    """A stored article found by full-text search."""

    id: int
    feed: str
    link: str
    published: datetime | None
    seen_at: datetime
    story_id: int | None
    #: The title and a snippet with the matched words between the caller's marks.
    title: str
    snippet: str
    #: BM25 (lower is better).
    rank: float
    #: The rules that hit it, space-separated; None: none.
    rules: str | None


@dataclass(frozen=True)
class RuleCount:
    """How often one rule hit: ever, and in the last day."""

    rule: str
    hits: int
    last_day: int


@dataclass(frozen=True)
class Stats:
    """What the database holds, for `news-monitor stats`."""

    #: Where it is, and its size on disk (with the write-ahead log).
    database: str
    size_bytes: int
    articles: int
    articles_last_day: int
    oldest_article: datetime | None
    stories: int
    #: Articles of first polls still waiting for their story.
    articles_without_story: int
    hits: int
    hits_last_day: int
    muted_hits: int
    #: Hits per rule, the most first.
    rules: tuple[RuleCount, ...]
    #: Deliveries by status.
    deliveries: Mapping[str, int]
    #: Among the configured, enabled feeds (every feed ever polled if not given).
    feeds_polled: int
    feeds_failing: int
    feeds_stopped: int
    silences_active: int


def plain(record: Any) -> Any:
    """A record as JSON-ready data (a dict of its fields): times as stored stamps
    (``2026-11-24T07:21:13Z``), tuples as lists."""
    if is_dataclass(record) and not isinstance(record, type):
        return {f.name: plain(getattr(record, f.name)) for f in fields(record)}
    if isinstance(record, datetime):
        return stamp(record)
    if isinstance(record, tuple | list):
        return [plain(item) for item in record]
    return record


# --- one Protocol per consumer --------------------------------------------------------


class PollStore(Protocol):
    """What the poll pipeline needs (monitor.pipeline)."""

    def feed_state(self, name: str) -> FeedState: ...

    def record_fetch(
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        outcome: str,
        error: str | None = ...,
        error_kind: str | None = ...,
        etag: str | None = ...,
        last_modified: str | None = ...,
        next_poll: datetime | None = ...,
        retry_after_until: datetime | None = ...,
        moved_to: str | None = ...,
        disabled: str | None = ...,
        found_new: bool = ...,
        ttl: int | None = ...,
    ) -> None: ...

    def set_feed_flags(self, name: str, **flags: int) -> None: ...

    def recent_uids(self, feed: str, limit: int) -> frozenset[str]: ...

    def unseen(self, feed: str, articles: Sequence[Article]) -> list[Article]: ...

    def save(
        self,
        matched: Iterable[tuple[Article, Sequence[Hit]]],
        now: datetime,
        *,
        policies: Mapping[str, AlertPolicy] | None = ...,
        quiet: timedelta = ...,
        vocabulary: Vocabulary | None = ...,
        baseline: bool = ...,
        storm: int = ...,
        cluster_later: bool = ...,
    ) -> list[int]: ...

    def cluster_pending(
        self,
        now: datetime,
        *,
        limit: int = ...,
        upto: int | None = ...,
        policies: Mapping[str, AlertPolicy] | None = ...,
        quiet: timedelta = ...,
        vocabulary: Vocabulary | None = ...,
        storm: int = ...,
    ) -> tuple[int, list[int]]: ...

    def last_pending(self) -> int: ...

    def recent_story_words(self, limit: int = ...) -> Iterator[Collection[int]]: ...

    def rekey_stories(self, vocabulary: Vocabulary, limit: int = ..., batch: int = ...) -> int: ...

    def add_notice(
        self,
        kind: str,
        subject: str,
        title: str,
        body: str,
        channels: Sequence[str],
        now: datetime,
    ) -> int: ...


class Outbox(Protocol):
    """What the delivery loop needs (monitor.deliver)."""

    def due_deliveries(
        self,
        now: datetime,
        limit: int = ...,
        *,
        channels: Collection[str] | None = ...,
        exclude: Collection[str] = ...,
        after: int = ...,
    ) -> list[PendingDelivery | Digest]: ...

    def mark_sent(self, delivery_id: int, now: datetime) -> None: ...

    def mark_failed(
        self,
        delivery_id: int,
        error: str,
        retry_at: datetime,
        *,
        now: datetime | None = ...,
        max_age: float | None = ...,
    ) -> bool: ...

    def defer(self, delivery_id: int, batch: str, release_at: datetime) -> None: ...

    def postpone(self, delivery_id: int, until: datetime) -> None: ...

    def release_batches(self, now: datetime, channels: Collection[str] | None = ...) -> int: ...

    def mute_silenced(self, now: datetime) -> int: ...


class ReadSide(Protocol):
    """What the CLI's reports and the pages read; never writes."""

    def feeds(self) -> list[FeedState]: ...

    def hits(
        self,
        *,
        limit: int | None = ...,
        rule: str | None = ...,
        feed: str | None = ...,
        since: datetime | None = ...,
        until: datetime | None = ...,
    ) -> list[HitRow]: ...

    def stories(
        self, *, limit: int = ..., min_sources: int = ..., story_id: int | None = ...
    ) -> list[StoryRow]: ...

    def deliveries(
        self, *, status: str | None = ..., channel: str | None = ..., limit: int = ...
    ) -> list[DeliveryRow]: ...

    def silences(self, now: datetime, *, everything: bool = ...) -> list[SilenceRow]: ...

    def search(
        self,
        query: str,
        *,
        limit: int = ...,
        feed: str | None = ...,
        since: datetime | None = ...,
        mark: tuple[str, str] = ...,
    ) -> list[SearchRow]: ...

    def stats(self, now: datetime, feeds: Collection[str] | None = ...) -> Stats: ...

    def counts(self) -> dict[str, int]: ...

    def delivery_counts(self) -> dict[str, int]: ...

    def broken_feeds(self, failures: int) -> set[str]: ...

    def active_rule_sources(self) -> dict[str, tuple[str, str]]: ...

    def articles_since(self, since: datetime | None) -> Iterator[tuple[int, Article]]: ...

    def unindexed(self) -> int: ...

    def close(self) -> None: ...


class Admin(Protocol):
    """What an operator's commands change (retry, silences, resume, prune)."""

    def retry(self, ids: Sequence[int], now: datetime, *, dead: bool = ...) -> int: ...

    def add_silence(
        self, kind: str, target: str, until: datetime, now: datetime, reason: str = ...
    ) -> int: ...

    def lift_silence(self, silence_id: int, now: datetime) -> bool: ...

    def resume_feed(self, name: str) -> str | None: ...

    def prune(
        self,
        now: datetime,
        *,
        articles: float,
        hits: float,
        quiet: timedelta = ...,
        dry_run: bool = ...,
    ) -> dict[str, int]: ...

    def vacuum(self) -> None: ...

    def catch_up_search(self, stop: Callable[[], bool] = ...) -> int: ...

    def close(self) -> None: ...


class Upkeep(Protocol):
    """The daemon's own jobs beside polling: the ruleset it runs, word rarity, the
    search index, retention and checkpoints, in short steps."""

    def record_rules(self, rules: Iterable[Rule], now: datetime) -> None: ...

    def recent_texts(self, limit: int = ...) -> list[str]: ...

    def index_search(self, batch: int = ...) -> int: ...

    def catch_up_search(self, stop: Callable[[], bool] = ...) -> int: ...

    def prune_steps(
        self,
        now: datetime,
        *,
        articles: float,
        hits: float,
        quiet: timedelta = ...,
        batch: int = ...,
    ) -> Iterator[dict[str, int]]: ...

    def prune_story_index_steps(self, before: datetime, batch: int = ...) -> Iterator[int]: ...

    def checkpoint(self) -> None: ...

    def close(self) -> None: ...


class Storage(PollStore, Outbox, ReadSide, Admin, Upkeep, Protocol):
    """A whole backend: what the daemon holds and hands out by the Protocols above."""
