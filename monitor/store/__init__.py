"""Storage: every SQL statement of the daemon lives in this package.

``Store`` is the SQLite database of one daemon, made of one mixin per concern on a shared
base (the connection, transactions, error wrapping). The daemon owns one writer
connection; CLI commands open their own (WAL lets them read while the daemon writes).

Timestamps are stored as ISO 8601 UTC text (``2026-11-24T07:21:13Z``), which sorts.
"""

from __future__ import annotations

from monitor.policy import DIGEST_ITEMS
from monitor.store.alerts import delivery_key
from monitor.store.articles import BASELINE_MUTED, CLUSTER_BATCH, ArticlesMixin
from monitor.store.base import CHECKPOINT_PAGES, DEFAULT_QUIET
from monitor.store.feeds import FeedsMixin
from monitor.store.maintenance import MaintenanceMixin
from monitor.store.migrations import migrations
from monitor.store.outbox import OutboxMixin
from monitor.store.reads import ReadsMixin
from monitor.store.search import INDEX_BATCH, SearchMixin
from monitor.store.silences import SilencesMixin
from monitor.store.stories import MAX_CANDIDATES, PER_KEY


class Store(
    FeedsMixin,
    ArticlesMixin,
    OutboxMixin,
    SilencesMixin,
    SearchMixin,
    ReadsMixin,
    MaintenanceMixin,
):
    """The SQLite database of one daemon. Not thread-safe: use it from one thread."""


__all__ = [
    "BASELINE_MUTED",
    "CHECKPOINT_PAGES",
    "CLUSTER_BATCH",
    "DEFAULT_QUIET",
    "DIGEST_ITEMS",
    "INDEX_BATCH",
    "MAX_CANDIDATES",
    "PER_KEY",
    "Store",
    "delivery_key",
    "migrations",
]
