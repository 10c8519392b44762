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


# Budgets and the replay cache, as in the SQLite file (schema v5, v6; cache.py). The running
# totals per period, team-wide (scope 'team', who '') and per user, and the prompt ratios are
# kept by a trigger in the transaction that inserts the row: every writer (a kernel, a spooled
# row sent later, `ledger copy`) keeps them, and a budget check reads one row, never scans.
_SPEND_TABLES = (
    """CREATE TABLE IF NOT EXISTS spend_totals (
        scope TEXT NOT NULL, who TEXT NOT NULL, period TEXT NOT NULL,
        usd DOUBLE PRECISION NOT NULL DEFAULT 0, tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, who, period))""",
    """CREATE TABLE IF NOT EXISTS spend_reservations (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, who TEXT NOT NULL, period TEXT NOT NULL,
        usd DOUBLE PRECISION NOT NULL, tokens BIGINT NOT NULL, expires_us BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS spend_reservations_expiry ON spend_reservations (expires_us)",
    """CREATE TABLE IF NOT EXISTS prompt_ratio (
        model TEXT PRIMARY KEY, chars BIGINT NOT NULL, tokens BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS replay_cache (
        key TEXT PRIMARY KEY, model TEXT NOT NULL, answer TEXT NOT NULL, prompt TEXT,
        prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL,
        cost DOUBLE PRECISION, stored_at TEXT NOT NULL, replays BIGINT NOT NULL DEFAULT 0)""",
)
_PERIODS = """(VALUES ('day:' || to_char(to_timestamp({t} / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')),
                     ('month:' || to_char(to_timestamp({t} / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM')),
                     ('total')) AS p(period)"""
_SPEND_TRIGGER = f"""CREATE OR REPLACE FUNCTION pienteger_calls_spend() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cached = 0 THEN
        -- The same order of rows for every insert: concurrent writers queue, never deadlock.
        INSERT INTO spend_totals AS t (scope, who, period, usd, tokens)
        SELECT s.scope, s.who, p.period, coalesce(NEW.cost, 0), coalesce(NEW.total_tokens, 0)
        FROM (VALUES ('team', ''), ('user', NEW."user")) AS s(scope, who), {_PERIODS.format(t="NEW.time_us")}
        ORDER BY 1, 2, 3
        ON CONFLICT (scope, who, period) DO UPDATE SET usd = t.usd + excluded.usd, tokens = t.tokens + excluded.tokens;
        IF NEW.usage_source = 'reported' AND NEW.prompt_chars > 0 AND NEW.prompt_tokens > 0 THEN
            INSERT INTO prompt_ratio AS r (model, chars, tokens) VALUES (NEW.model, NEW.prompt_chars, NEW.prompt_tokens)
            ON CONFLICT (model) DO UPDATE SET chars = r.chars + excluded.chars, tokens = r.tokens + excluded.tokens;
        END IF;
    END IF;
    RETURN NULL;
END $$"""
# Rows written before the trigger existed (a database made by an earlier release) count too.
_BACKFILL = (
    f"""INSERT INTO spend_totals (scope, who, period, usd, tokens)
        SELECT s.scope, s.who, p.period, sum(coalesce(c.cost, 0)), sum(coalesce(c.total_tokens, 0))
        FROM calls c CROSS JOIN LATERAL (VALUES ('team', ''), ('user', c."user")) AS s(scope, who)
        CROSS JOIN LATERAL {_PERIODS.format(t="c.time_us")}
        WHERE c.cached = 0 GROUP BY 1, 2, 3""",
    """INSERT INTO prompt_ratio (model, chars, tokens)
        SELECT model, sum(prompt_chars), sum(prompt_tokens) FROM calls
        WHERE usage_source = 'reported' AND prompt_chars > 0 AND prompt_tokens > 0 AND cached = 0
        GROUP BY model""",
)


def _spend_and_cache_tables(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT to_regclass('spend_totals') IS NULL").fetchone()
    new = bool(row and row[0])
    for statement in _SPEND_TABLES:
        conn.execute(statement)
    conn.execute(_SPEND_TRIGGER)
    conn.execute("DROP TRIGGER IF EXISTS calls_spend ON calls")
    conn.execute("CREATE TRIGGER calls_spend AFTER INSERT ON calls FOR EACH ROW EXECUTE FUNCTION pienteger_calls_spend()")
    if new:
        for statement in _BACKFILL:
            conn.execute(statement)


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
        _spend_and_cache_tables(conn)
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    return SCHEMA_VERSION


__all__ = ["MIGRATION_LOCK", "derived_columns", "migrate_postgres", "quoted"]
