"""The team ledger's tables on PostgreSQL, derived from the SQLite ledger's schema.

The columns are read from the SQLite schema itself (an in-memory file migrated to the newest
version), so a column added there appears here too; ``schema_version`` holds the same version
number, and a migration runs under an advisory lock, so kernels starting together do not run
a step twice.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .schema import MEMORY, SCHEMA_VERSION, connect, migrate

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

# Any number the team's other applications are unlikely to use for their own advisory locks.
MIGRATION_LOCK = 0x70696E74  # "pint"


def quoted(name: str) -> str:
    """A column name as a SQL identifier (PostgreSQL and SQLite alike): some (``user``) are reserved words there."""
    return '"' + name.replace('"', '""') + '"'


def _pg_type(sqlite_type: str) -> str:
    declared = sqlite_type.upper()
    if "INT" in declared:
        return "BIGINT"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB", "NUMERIC")):
        return "DOUBLE PRECISION"
    return "TEXT"


@functools.cache
def derived_columns() -> tuple[tuple[str, str], ...]:
    """(name, PostgreSQL column definition) for every column of SQLite's ``calls`` table but ``id``."""
    conn = connect(MEMORY)
    try:
        migrate(conn)
        info = conn.execute("PRAGMA table_info(calls)").fetchall()
    finally:
        conn.close()
    columns = []
    for _cid, name, declared, notnull, default, primary in info:
        if primary:
            continue
        definition = _pg_type(declared or "")
        if default is not None:
            definition += f" DEFAULT {default}"
        if notnull:
            definition += " NOT NULL"
        columns.append((name, definition))
    return tuple(columns)


def migrate_postgres(conn: psycopg.Connection[Any]) -> int:
    """Bring the database up to the ledger's schema (a newer one is left alone); returns its version."""
    found = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if found is not None and found[0]:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        if row is not None and row[0] >= SCHEMA_VERSION:
            return int(row[0])
    with conn.transaction():
        # One kernel migrates; the others wait here and then find the work done. Even
        # CREATE TABLE IF NOT EXISTS fails when two sessions run it at once, so it waits too.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        version = int(row[0]) if row is not None else 0
        if version >= SCHEMA_VERSION:
            return version
        conn.execute(
            "CREATE TABLE IF NOT EXISTS calls ("
            "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, row_uid TEXT NOT NULL UNIQUE)"
        )
        present = {
            name for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'calls'"
            )
        }
        for name, definition in derived_columns():
            if name not in present:
                conn.execute(f"ALTER TABLE calls ADD COLUMN {quoted(name)} {definition}")
        conn.execute("CREATE INDEX IF NOT EXISTS calls_time ON calls (time_us)")
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    return SCHEMA_VERSION


__all__ = ["MIGRATION_LOCK", "derived_columns", "migrate_postgres", "quoted"]
