"""Storage: every SQL statement of the daemon lives in this package.

* :mod:`~monitor.store.interface`: what storage offers, one Protocol per consumer (the
  poll pipeline, the outbox, the read side, admin), and the records it returns;
* :mod:`~monitor.store.sqlite`: ``Store``, the SQLite backend, made of one mixin per
  concern (``feeds``, ``articles``, ``stories``, ``alerts``, ``outbox``, ``silences``,
  ``search``, ``reads``, ``maintenance``) on a shared ``base``;
* :mod:`~monitor.store.schema` (the current schema, whole) and
  :mod:`~monitor.store.migrations` (its history).

Names are loaded on first use: code that needs only the Protocols and records (the
delivery loop, the CLI's printing) does not load the database driver. (The migrations
object is ``monitor.store.migrations.migrations``: the module's name would hide it.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.lazy import lazy_names

if TYPE_CHECKING:
    from pathlib import Path

    from monitor.store.alerts import delivery_key
    from monitor.store.articles import BASELINE_MUTED
    from monitor.store.base import CHECKPOINT_PAGES
    from monitor.store.interface import Storage
    from monitor.store.search import INDEX_BATCH
    from monitor.store.sqlite import Store
    from monitor.store.stories import MAX_CANDIDATES, PER_KEY

#: The module of this package that holds each name of ``__all__``.
_HOMES = {
    "BASELINE_MUTED": "articles",
    "CHECKPOINT_PAGES": "base",
    "INDEX_BATCH": "search",
    "MAX_CANDIDATES": "stories",
    "PER_KEY": "stories",
    "Store": "sqlite",
    "delivery_key": "alerts",
}

__all__ = [
    "BASELINE_MUTED",
    "CHECKPOINT_PAGES",
    "INDEX_BATCH",
    "MAX_CANDIDATES",
    "PER_KEY",
    "Store",
    "delivery_key",
]


if not TYPE_CHECKING:  # mypy checks the names imported above, not any name at all
    __getattr__ = lazy_names(__name__, _HOMES)


def open_store(database: Path, *, readonly: bool = False) -> Storage:
    """The storage the settings' ``database`` names, opened (and, for writing, brought
    up to date): the one place that picks the backend (a SQLite file)."""
    from monitor.store.sqlite import Store

    return Store(database, readonly=readonly)


def upgrade_pending(database: Path) -> bool:
    """Whether opening ``database`` for writing will first bring its schema up to date
    (a migration can take a minute on a large database)."""
    from monitor.store.sqlite import Store

    return Store.upgrade_pending(database)
