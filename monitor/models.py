"""The records that cross module boundaries. Frozen, plain data, no behaviour that does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Literal

Severity = Literal["low", "normal", "urgent"]
SEVERITIES: tuple[Severity, ...] = ("low", "normal", "urgent")


@dataclass(frozen=True)
class FeedConfig:
    """One feed as the user configured it."""

    #: Short unique name, used in rules (`feeds:`), logs and the database.
    name: str
    #: http(s) URL of the RSS/Atom document.
    url: str
    #: Seconds between polls (before jitter).
    interval: float
    #: Disabled feeds are validated but never polled.
    enabled: bool = True
    #: Labels a rule can scope by (``feeds: [wires]``) instead of listing names.
    tags: tuple[str, ...] = ()
    #: Tell the operator when nothing new arrived for this long (seconds); None: the
    #: settings' default (health.silence), 0: never.
    silence: float | None = None
    #: Store the first poll's backlog without alerting it; None: delivery.baseline.
    baseline: bool | None = None


@dataclass(frozen=True)
class QuietHours:
    """A daily window (local time of ``timezone``) in which a channel gets only urgent
    alerts; the others wait and go out as one digest when it ends. ``start`` > ``end``
    spans midnight (22:00-07:00)."""

    start: time
    end: time
    timezone: str = "UTC"


@dataclass(frozen=True)
class ChannelConfig:
    """A named place alerts go to: an apprise URL or an apprise config file."""

    name: str
    #: The apprise URL with secrets already substituted from the environment.
    #: Never log it: use :func:`monitor.deliver.privacy_url`.
    url: str
    #: Labels a rule can route by (``channels: [desk]``) instead of listing names.
    tags: tuple[str, ...] = ()
    #: An apprise configuration file (YAML or text) to send through instead of ``url``.
    config_file: str = ""
    #: How alerts are written: email, markdown, json or text (None: from the URL scheme).
    format: str | None = None
    #: A custom title/body for this channel's alerts (Jinja2); a rule's own wins.
    template: Template | None = None
    #: Non-urgent alerts wait during these hours and go out as one digest after.
    quiet_hours: QuietHours | None = None
    #: A cron schedule: the channel gets digests at those times instead of one message
    #: per alert (urgent alerts still go at once); ``timezone`` is its zone.
    digest: str | None = None
    timezone: str = "UTC"
    #: Where the settings file defines it (line, column), for error messages.
    pos: tuple[int, int] = field(default=(0, 0), compare=False)


# --- rule conditions: a small boolean tree over terms -------------------------------------


#: Where a term looks. None means the default: title and content.
FIELDS = ("title", "content", "author", "category", "feed", "link")

#: How a term's words match: "word" (whole words, singular = plural), "prefix" (the last
#: word may continue: sanction* = sanctioned, sanctions...), "stem" (English inflections:
#: sanction~ = sanctions, sanctioned, sanctioning; never "wellness" for well~).
TermMode = Literal["word", "prefix", "stem"]


@dataclass(frozen=True)
class Term:
    """A word or phrase, stored as the normalised keys it must match consecutively."""

    #: What the user wrote, shown in alerts as the reason.
    text: str
    #: Normalised word keys (see :func:`monitor.text.word_key`), matched as a phrase.
    keys: tuple[str, ...]
    field: str | None = None
    mode: TermMode = "word"


@dataclass(frozen=True)
class Regex:
    """A regular expression run by RE2 (linear time) over a field's text."""

    #: As written, e.g. ``/t-?72/i``.
    text: str
    pattern: str
    ignore_case: bool = False
    field: str | None = None


@dataclass(frozen=True)
class Near:
    """Two terms within ``distance`` words of each other, in either order."""

    left: Term
    right: Term
    distance: int

    @property
    def text(self) -> str:
        return f"{self.left.text} NEAR/{self.distance} {self.right.text}"


@dataclass(frozen=True)
class AnyOf:
    """True when at least one child is true."""

    children: tuple[Condition, ...]


@dataclass(frozen=True)
class AllOf:
    """True when every child is true."""

    children: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """True when the child is false."""

    child: Condition


Condition = Term | Regex | Near | AnyOf | AllOf | Not


@dataclass(frozen=True)
class Template:
    """A user's Jinja2 override of an alert's title and/or body (None: the default)."""

    title: str | None = None
    body: str | None = None


@dataclass(frozen=True)
class AlertPolicy:
    """When a rule's hits become alerts: per story (the articles of many outlets about one
    event), at most once per ``realert`` window, or batched into a digest."""

    #: One alert per story: copies from other outlets are stored as hits, not alerted.
    #: False: every hit is alerted (still no sooner than ``min_sources`` allows).
    once_per_story: bool = True
    #: Alert only once this many distinct sources carry the story (corroboration).
    min_sources: int = 1
    #: Source counts at which a follow-up says "now N sources", ascending.
    follow_up: tuple[int, ...] = ()
    #: Seconds after an alert during which more hits with the same ``realert_key`` value
    #: are stored, not alerted (0: no window).
    realert: float = 0.0
    #: What "the same" means for ``realert``: rule, story, feed, source or link.
    realert_key: str = "rule"
    #: When an alert comes back soon after its window ended (within one more window), the
    #: window doubles, up to this many seconds (0: it never grows).
    realert_max: float = 0.0
    #: A cron schedule ("0 8 * * *"): hits are sent as one digest per channel at those
    #: times instead of one message each; ``digest_timezone`` is the schedule's zone.
    digest: str | None = None
    digest_timezone: str = "UTC"
    #: A custom title/body for this rule's alerts (Jinja2).
    template: Template | None = None


@dataclass(frozen=True)
class Rule:
    """A validated rule, ready to be compiled by :mod:`monitor.match`."""

    name: str
    condition: Condition
    description: str = ""
    severity: Severity = "normal"
    #: Feed names the rule is limited to; empty means every feed.
    feeds: tuple[str, ...] = ()
    #: Channel names the rule alerts; empty means the config's default channels.
    channels: tuple[str, ...] = ()
    enabled: bool = True
    #: Fire only when at least this many distinct positive terms occur (0: no minimum).
    min_terms: int = 0
    #: When hits on a story are alerted.
    policy: AlertPolicy = AlertPolicy()
    #: Where the rule was defined, for error messages.
    path: str = ""
    line: int = 0
    #: Hash of the rule's definition: stored with each hit it produces.
    version: str = ""
    #: The definition as canonical JSON, so a version can be stored and rebuilt later.
    source: str = ""


# --- articles, hits, deliveries --------------------------------------------------------------


@dataclass(frozen=True)
class Article:
    """One feed item, normalised: text fields are plain text, dates are UTC."""

    #: Name of the feed it came from.
    feed: str
    #: Stable id within the feed: the guid, else the link, else a hash of the content.
    uid: str
    title: str
    link: str
    #: Summary and body as plain text (HTML removed).
    summary: str = ""
    content: str = ""
    author: str = ""
    #: Categories / tags the feed gave the item.
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    #: Hash of title + text: the same story republished under a new id has the same hash.
    content_hash: str = ""
    #: Hashes of its content words and of its numbers (monitor.stories.fingerprint), for
    #: story clustering; computed while parsing, or from the text when None.
    fingerprint: tuple[frozenset[int], frozenset[int]] | None = field(
        default=None, compare=False, repr=False
    )
    #: Its title and content as the matcher normalises them (monitor.text.normalize of
    #: monitor.match.field_texts), when the parser has them already; never stored.
    normalized: tuple[str, str] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Hit:
    """A rule matched an article, with the reason why."""

    rule: str
    rule_version: str
    severity: Severity
    #: The terms that occurred, as written in the rule, in rule order.
    terms: tuple[str, ...]
    #: A short extract of the article around the first matched term.
    snippet: str
    #: Channels to alert, already resolved against the config defaults.
    channels: tuple[str, ...] = ()


#: Parsed articles with their hits (None: not matched, as stored already); see
#: monitor.parse.ParsePool.parse_matched.
Matched = list[tuple[Article, list[Hit] | None]]


@dataclass(frozen=True)
class FetchResult:
    """What the fetch stage returns: new content, or 'not modified'."""

    url: str
    status: int
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    #: Set when every redirect from ``url`` to where the answer came from was permanent
    #: (301/308): the URL to poll from now on. Carries the credentials of ``url`` only
    #: when they were sent to it (same origin); None without redirects or with any 302/303/307.
    permanent_url: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class PollResult:
    """The outcome of one poll of one feed, for logs and tests."""

    feed: str
    #: "not-modified", "ok", "error", "waiting" (inside a Retry-After window) or "stopped".
    outcome: str
    entries: int = 0
    new_articles: int = 0
    hits: int = 0
    error: str | None = None
    #: When the scheduler should poll this feed next (before jitter).
    next_poll: datetime | None = None
    #: The feed must not be polled again (410 Gone): the scheduler drops it.
    stopped: bool = False
    #: Articles stored for story clustering after the poll (a first poll's backlog:
    #: monitor.backlog.cluster_backlog).
    unclustered: int = 0
    #: Alerts made by clustering first polls' backlogs before this poll's articles were
    #: stored (held hits their copies corroborated).
    released: int = 0
    #: Bytes of the (decoded) response body, and the seconds the fetch took.
    size: int = field(default=0, compare=False)
    fetch_seconds: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class PendingDelivery:
    """An alert waiting to be sent on one channel, with everything needed to render it."""

    id: int
    channel: str
    attempts: int
    rule: str
    severity: Severity
    terms: tuple[str, ...]
    snippet: str
    feed: str
    title: str
    link: str
    published: datetime | None
    seen_at: datetime
    #: For system notices (feed health...): their text; empty for rule hits.
    notice: str = ""
    #: The story of the hit's article, how many distinct sources carry it now, and who.
    story_id: int | None = None
    sources: int = 0
    outlets: tuple[str, ...] = ()
    #: 0 for the alert itself; N for the follow-up sent when N sources carried the story.
    step: int = 0
    #: Idempotency key: the same alert on the same channel always has the same key, so a
    #: receiver can drop the one copy a crash between sending and recording may repeat.
    key: str = ""


@dataclass(frozen=True)
class Digest:
    """Several alerts of one channel sent as one message."""

    id: int
    channel: str
    attempts: int
    #: Why they were batched: "digest" (a schedule), "quiet-hours" (released when the
    #: channel's quiet hours end) or "storm" (too many hits from one poll).
    reason: str
    #: What was batched: the rule or channel of a scheduled digest, the feed of a storm.
    label: str
    created_at: datetime
    #: The alerts, oldest first (at most DIGEST_ITEMS of them; ``total`` counts all).
    items: tuple[PendingDelivery, ...]
    total: int
    key: str = ""


@dataclass(frozen=True)
class FeedState:
    """What is stored of one feed's polls (a feed never polled has only its name)."""

    name: str
    #: The URL the state belongs to (masked: no credentials); None: never polled.
    url: str | None = None
    #: Validators to send with the next request (conditional GET).
    etag: str | None = None
    last_modified: str | None = None
    last_fetch: datetime | None = None
    last_success: datetime | None = None
    #: ok, not-modified, error, stopped.
    last_outcome: str | None = None
    consecutive_errors: int = 0
    last_error: str | None = None
    #: What kind of error (timeout, http, parse, too-large, ...).
    last_error_kind: str | None = None
    next_poll: datetime | None = None
    #: Not requested again before this (the server's Retry-After).
    retry_after_until: datetime | None = None
    #: Where a permanent redirect pointed (masked).
    moved_to: str | None = None
    #: Why the feed stopped for good (410 Gone); None while it is polled.
    disabled: str | None = None
    #: When it last had an item not seen before.
    last_new: datetime | None = None
    #: Feed-health notices said and not yet taken back (monitor.health).
    failing_alerted: bool = False
    quiet_alerted: bool = False
    #: The feed's RSS ``<ttl>`` in minutes, from its last full response.
    ttl: int | None = None
