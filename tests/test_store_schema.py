"""The schema text (monitor/store/schema.py) and the migrations (the history) make the
same database: a new database is made from the text, an old one is migrated."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import sqlite_utils

from monitor.store import Store
from monitor.store import schema as schema_module
from monitor.store.migrations import migrations


def shape(path: Path) -> dict[str, object]:
    """Everything of a database's schema that behaviour depends on: each object's
    definition (comments, quotes and spacing aside), each table's columns and foreign
    keys, each index's columns, the search index's settings, the migrations recorded."""
    conn = sqlite3.connect(path)
    out: dict[str, object] = {}
    for kind, name, sql in conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
    ):
        text = re.sub(r"\s+", "", re.sub(r"--[^\n]*", "", sql)).replace('"', "").lower()
        out[f"{kind} {name}"] = text
        if kind == "table":
            out[f"columns {name}"] = conn.execute(f"PRAGMA table_xinfo('{name}')").fetchall()
            out[f"keys {name}"] = conn.execute(f"PRAGMA foreign_key_list('{name}')").fetchall()
            out[f"indexes {name}"] = sorted(
                (row[2:], conn.execute(f"PRAGMA index_xinfo('{row[1]}')").fetchall())
                for row in conn.execute(f"PRAGMA index_list('{name}')")
            )
    out["fts config"] = conn.execute("SELECT * FROM articles_fts_config ORDER BY k").fetchall()
    out["fts state"] = conn.execute("SELECT * FROM fts_state").fetchall()
    out["migrations"] = [
        row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")
    ]
    conn.close()
    return out


def test_the_schema_text_is_what_the_migrations_make(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    conn = sqlite3.connect(migrated)
    migrations.apply(sqlite_utils.Database(conn))
    conn.close()
    made = tmp_path / "new.db"
    Store(made).close()
    assert shape(made) == shape(migrated)


def test_a_new_database_is_made_from_the_schema_text(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    # Only the text keeps its comments: the migrations never wrote one.
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'feeds'").fetchone()
    assert "-- masked: credentials never reach the file" in sql
    conn.close()
    assert not migrations.pending(sqlite_utils.Database(sqlite3.connect(path)))


def test_schema_statements_keep_a_trigger_whole() -> None:
    found = [s for s in schema_module.statements(schema_module.SCHEMA) if "TRIGGER" in s]
    assert len(found) == 2
    assert all(s.rstrip().endswith("END;") for s in found)
