"""The connection every part of the store shares: opening, pragmas, migrating,
transactions, and turning sqlite3's errors into StorageError / StorageBusy."""

from __future__ import annotations

import contextlib
import functools
import inspect
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlite_utils

from monitor.errors import StorageBusy, StorageError
from monitor.store import schema
from monitor.store.migrations import migrations
from monitor.text import unstamp

P = ParamSpec("P")
T = TypeVar("T")

#: Pages the write-ahead log may reach (about 40 MB) before a commit copies it back into
#: the database file (SQLite's default is 1,000). A checkpoint waits for the disk twice,
#: with the poll loop stopped; ten times fewer of them, each copying once a page changed
#: many times, cost a third less (the 1,000-feed benchmark's commits: 9.6 s instead of
#: 16.3). The daemon's search indexer also checkpoints after each round, on its thread.
CHECKPOINT_PAGES = 10_000


def _database_error(path: Path, action: str, exc: sqlite3.Error) -> StorageError:
    """The StorageError for sqlite3's ``exc`` while ``action``: what, which database,
    and what to do about it."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StorageBusy(
            f"{path}: cannot {action}: the database is locked by another process; try again"
        )
    hint = ""
    if "full" in text:
        hint = "; free disk space (the change was rolled back and is tried again)"
    elif "malformed" in text or "not a database" in text:
        hint = "; the file is damaged or not a news-monitor database: restore a backup"
    elif "readonly" in text or "unable to open" in text:
        hint = "; check the file's and its folder's permissions"
    return StorageError(f"{path}: cannot {action}: {text}{hint}")


def _action(name: str) -> str:
    """What a store method does, for its errors ("record_fetch" -> "record fetch")."""
    return name.strip("_").replace("_", " ")


def wrap_exceptions(method: Callable[P, T]) -> Callable[P, T]:
    """Let only StorageError / StorageBusy out of a store method: sqlite3's errors are
    turned into them, with the database's path and the cause chained. A generator
    method is wrapped around its iteration (where its queries run)."""
    action = _action(method.__name__)

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def iterate(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return (yield from method(*args, **kwargs))
            except sqlite3.Error as exc:
                raise _database_error(args[0].path, action, exc) from exc  # type: ignore[attr-defined]

        return iterate

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise _database_error(args[0].path, action, exc) from exc  # type: ignore[attr-defined]

    return call


def _filters(*pairs: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause of the conditions whose value is not None, and their arguments."""
    used = [(clause, value) for clause, value in pairs if value is not None]
    if not used:
        return "", []
    return "WHERE " + " AND ".join(c for c, _ in used), [v for _, v in used]


R = TypeVar("R")


def record_of(cls: type[R], row: Mapping[str, Any]) -> R:
    """The record ``cls`` (a frozen dataclass) of a row read by column name: stored
    stamps become aware datetimes, 0/1 become booleans, lists become tuples."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in row:
            continue
        value, kind = row[f.name], str(f.type)
        if "datetime" in kind:
            value = unstamp(value)
        elif kind == "bool":
            value = bool(value)
        elif kind.startswith("tuple") and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def one_value(db: sqlite_utils.Database, sql: str, *args: Any) -> int:
    return int(db.execute(sql, list(args)).fetchone()[0] or 0)


class StoreBase:
    """The database of one daemon. Not thread-safe: use it from one thread.

    Every public method of a subclass is wrapped (:func:`wrap_exceptions`): callers
    catch StorageError (and StorageBusy, worth trying again), never sqlite3's errors."""

    path: Path

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(value):
                setattr(cls, name, wrap_exceptions(value))

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not path.exists():
                    raise StorageError(
                        f"{path}: database does not exist yet; run `news-monitor run` first"
                    )
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                if migrations.pending(sqlite_utils.Database(conn)):
                    # Written by an older version and not opened by the daemon since:
                    # bring the schema up to date once (transactional, safe while the
                    # daemon runs), then read.
                    conn.close()
                    type(self)(path).close()
                    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
            self.db = sqlite_utils.Database(conn)
            if not readonly:
                self.db.enable_wal()
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
                # After a burst the log file is cut back to that size.
                (page,) = conn.execute("PRAGMA page_size").fetchone()
                conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_PAGES * page}")
                self._migrate()
        except sqlite3.Error as exc:
            raise _database_error(path, "open database", exc) from exc

    @staticmethod
    def upgrade_pending(path: Path) -> bool:
        """Whether the database at ``path`` exists and opening it for writing will bring
        its schema up to date (a migration can take a minute on a large database)."""
        if not path.exists():
            return False
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return bool(migrations.pending(sqlite_utils.Database(conn)))
            finally:
                conn.close()
        except sqlite3.Error:
            return False  # opening it for writing says what is wrong

    def _migrate(self) -> None:
        """Make a new database from the schema, or bring an older one up to date."""
        if not self.db.table_names():  # new: no lock taken to find that out
            with self._atomic():  # the write lock: another process may be making it too
                if not self.db.table_names():
                    schema.create(self.db)
                    return
        known = {m.name for m in migrations._migrations}
        unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
        if unknown:
            raise StorageError(
                f"{self.path}: database was written by a newer news-monitor "
                f"(migrations {', '.join(unknown)}); upgrade news-monitor or restore a backup"
            )
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.conn.close()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file as far as readers allow,
        without blocking writers (a passive checkpoint)."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            raise _database_error(self.path, "checkpoint the database", exc) from exc

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """A write transaction. BEGIN IMMEDIATE takes the write lock first (waiting up to
        the busy timeout): a transaction that reads before it writes, begun deferred,
        fails at its first write if another connection (the search indexer, a command)
        committed in between, and in WAL mode no timeout helps with that. Nested: a
        savepoint, as sqlite-utils makes one."""
        conn = self.db.conn
        if conn.in_transaction or self.readonly:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            self.db.rollback()
            raise
