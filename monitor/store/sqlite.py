"""The SQLite backend: one mixin per concern on a shared base (monitor.store.base).

``Store`` is the database of one daemon, a file in WAL mode. The daemon owns one writer
connection; CLI commands open their own (WAL lets them read while the daemon writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.store.articles import ArticlesMixin
from monitor.store.feeds import FeedsMixin
from monitor.store.maintenance import MaintenanceMixin
from monitor.store.outbox import OutboxMixin
from monitor.store.reads import ReadsMixin
from monitor.store.search import SearchMixin
from monitor.store.silences import SilencesMixin

if TYPE_CHECKING:
    from monitor.store.interface import Storage


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


if TYPE_CHECKING:

    def _conforms(store: Store) -> Storage:
        """Type-checked only: the SQLite store offers every storage Protocol."""
        return store
