"""The usage ledger's file: its SQLite schema, the migrations between versions, one row's values.

A file's ``PRAGMA user_version`` says which of ``MIGRATIONS`` it has had. Migration N takes a
file from version N to N + 1 and only adds (columns, indexes, tables), so an older file opens
and gains the new columns, and an older release can still write to a newer file.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from typing import Any

from ..types import CallRecord

MEMORY = ":memory:"
BUSY_TIMEOUT_S = 5.0
# Server error bodies can be whole HTML pages; the ledger keeps the gist, not the page.
MAX_ERROR_CHARS = 2000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MICROSECOND = _dt.timedelta(microseconds=1)


# Migration N takes a file from user_version N to N + 1. Never edit a released step: add one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1: the contract's columns. time_us is microseconds since the epoch, UTC (exact, compact).
        """CREATE TABLE IF NOT EXISTS calls (
            id INTEGER PRIMARY KEY,
            time_us INTEGER NOT NULL,
            source TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT NOT NULL DEFAULT '',
            http_status INTEGER,
            stream INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            usage_source TEXT,
            latency_s REAL NOT NULL DEFAULT 0,
            ttft_s REAL,
            finish_reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 1,
            request_id TEXT
        )""",
    ),
    (  # v2: which endpoint, the notebook cell; an index for since/until; a view for sqlite3 users.
        "ALTER TABLE calls ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'completions'",
        "ALTER TABLE calls ADD COLUMN execution_count INTEGER",
        "CREATE INDEX IF NOT EXISTS calls_time ON calls(time_us)",
        """CREATE VIEW IF NOT EXISTS calls_utc AS
            SELECT strftime('%Y-%m-%dT%H:%M:%fZ', time_us / 1e6, 'unixepoch') AS time, * FROM calls""",
    ),
    (  # v3: prompts and completions, filled only when the user opts in (store_prompts).
        "ALTER TABLE calls ADD COLUMN prompt TEXT",
        "ALTER TABLE calls ADD COLUMN text TEXT",
        # Lets a reader tell at once whether any prompts are stored, without a table scan.
        "CREATE INDEX IF NOT EXISTS calls_stored ON calls(id) WHERE prompt IS NOT NULL OR text IS NOT NULL",
    ),
    (  # v4: the values each category column has taken, kept by writers in the same transaction
        # as the row, so a reader knows a frame's categories without scanning the table.
        """CREATE TABLE IF NOT EXISTS labels (
            name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (name, value)
        ) WITHOUT ROWID""",
        *(
            f"INSERT OR IGNORE INTO labels SELECT DISTINCT '{name}', {name} FROM calls WHERE {name} IS NOT NULL"
            for name in ("source", "model", "status", "usage_source", "endpoint", "finish_reason")
        ),
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

INSERT_COLUMNS = (
    "time_us", "source", "model", "status", "error", "http_status", "stream", "prompt_tokens",
    "completion_tokens", "total_tokens", "usage_source", "latency_s", "ttft_s", "finish_reason",
    "attempts", "request_id", "endpoint", "execution_count", "prompt", "text",
)
INSERT_SQL = (
    f"INSERT INTO calls ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
)
LABELLED = ("source", "model", "status", "usage_source", "endpoint", "finish_reason")
LABEL_AT = tuple(INSERT_COLUMNS.index(name) for name in LABELLED)
LABEL_SQL = "INSERT OR IGNORE INTO labels (name, value) VALUES (?, ?)"


def time_to_us(when: _dt.datetime) -> int:
    """Microseconds since the epoch, exactly; a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return (when - _EPOCH) // _MICROSECOND


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _stored(value: str | list[str] | None) -> str | None:
    # Several prompts (or several choices' texts) are kept as a JSON array: they read back unambiguously.
    return value if value is None or isinstance(value, str) else json.dumps(list(value))


def row_values(rec: CallRecord, *, store_prompts: bool) -> tuple[Any, ...]:
    """The INSERT parameters for one record, in ``INSERT_COLUMNS`` order."""
    error = str(rec.error or "")
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 1] + "…"
    prompt = _stored(rec.prompt) if store_prompts else None
    text = _stored(rec.text) if store_prompts else None
    return (
        time_to_us(rec.time),
        str(rec.source or ""),
        str(rec.model or ""),
        str(rec.status),
        error,
        _optional_int(rec.http_status),
        1 if rec.stream else 0,
        _optional_int(rec.prompt_tokens),
        _optional_int(rec.completion_tokens),
        _optional_int(rec.total_tokens),
        None if rec.usage_source is None else str(rec.usage_source),
        float(rec.latency_s or 0.0),
        _optional_float(rec.ttft_s),
        None if rec.finish_reason is None else str(rec.finish_reason),
        int(rec.attempts),
        None if rec.request_id is None else str(rec.request_id),
        str(rec.endpoint or "completions"),
        _optional_int(rec.execution_count),
        prompt,
        text,
    )


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (each statement is its own transaction), WAL, NORMAL sync."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    if path != MEMORY:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file up to SCHEMA_VERSION (a newer file is left alone); returns its version now."""
    # IMMEDIATE: two processes opening a new file at once must not both run the same step.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
            version = step + 1
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version
