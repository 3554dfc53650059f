"""The search index kept up to date from a thread of the daemon's own, so that indexing
new articles does not take the poll loop's time."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from monitor.store import open_store
from monitor.store.interface import Upkeep

#: Seconds between search index updates (each adds what was stored since).
INDEX_EVERY = 2.0


class SearchIndexer:
    """Keeps the search index up to date (Store.catch_up_search) from a thread of its own
    with its own connection: FTS5 tokenising runs in SQLite, which lets go of the GIL,
    so it uses another core instead of the poll loop's time. After each round it also
    copies the write-ahead log back into the database file as far as it can without
    waiting (a passive checkpoint), so that the poll loop's commits rarely have to
    (see monitor.store.CHECKPOINT_PAGES)."""

    def __init__(self, database: Path) -> None:
        self._database = database
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-index")
        self._store: Upkeep | None = None  # made and used on the thread only
        self._closing = threading.Event()

    async def catch_up(self) -> int:
        """Index what was stored since; how many articles that was."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._catch_up)

    def _catch_up(self) -> int:
        if self._store is None:
            self._store = open_store(self._database)
        added = self._store.catch_up_search(stop=self._closing.is_set)
        self._store.checkpoint()
        return added

    def request_stop(self) -> None:
        """Make the round in flight end after the batch being indexed (the rest waits
        for the next start), so that a stop does not wait for a whole backlog."""
        self._closing.set()

    async def close(self) -> None:
        """Stop after the batch being indexed, and close the connection."""
        self._closing.set()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
