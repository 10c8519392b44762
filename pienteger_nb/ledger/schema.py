"""The usage ledger's file: its SQLite schema, the migrations between versions, one row's values.

A file's ``PRAGMA user_version`` says which of ``MIGRATIONS`` it has had. Migration N takes a
file from version N to N + 1 and only adds (columns, indexes, tables), so an older file opens
and gains the new columns, and an older release can still write to a newer file.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import sqlite3
from typing import Any

from ..kernel import notebook_path
from ..types import CallRecord
from .prices import cost_usd

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
    (  # v5: spend. The cost at record time (NULL: unpriced), replayed calls, the notebook and user;
        # running totals per UTC day, month and all time kept by a trigger (whoever writes the
        # row), so a budget check never scans calls; reservations a budget holds while a call
        # runs; the characters-per-prompt-token ratio each model has shown.
        "ALTER TABLE calls ADD COLUMN cost REAL",
        "ALTER TABLE calls ADD COLUMN cached INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE calls ADD COLUMN notebook TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN user TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN prompt_chars INTEGER",
        "INSERT OR IGNORE INTO labels VALUES ('notebook', ''), ('user', '')",
        """CREATE TABLE IF NOT EXISTS spend_totals (
            period TEXT PRIMARY KEY, usd REAL NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        *(
            f"""INSERT INTO spend_totals (period, usd, tokens)
                SELECT {key}, 0, sum(ifnull(total_tokens, 0)) FROM calls GROUP BY 1"""
            for key in (
                "'day:' || strftime('%Y-%m-%d', time_us / 1000000, 'unixepoch')",
                "'month:' || strftime('%Y-%m', time_us / 1000000, 'unixepoch')",
                "'total'",
            )
        ),
        """CREATE TRIGGER IF NOT EXISTS calls_spend AFTER INSERT ON calls WHEN NOT NEW.cached BEGIN
            INSERT INTO spend_totals (period, usd, tokens) VALUES
                ('day:' || strftime('%Y-%m-%d', NEW.time_us / 1000000, 'unixepoch'),
                 ifnull(NEW.cost, 0), ifnull(NEW.total_tokens, 0)),
                ('month:' || strftime('%Y-%m', NEW.time_us / 1000000, 'unixepoch'),
                 ifnull(NEW.cost, 0), ifnull(NEW.total_tokens, 0)),
                ('total', ifnull(NEW.cost, 0), ifnull(NEW.total_tokens, 0))
            ON CONFLICT (period) DO UPDATE SET usd = usd + excluded.usd, tokens = tokens + excluded.tokens;
        END""",
        """CREATE TABLE IF NOT EXISTS spend_reservations (
            id INTEGER PRIMARY KEY, period TEXT NOT NULL, usd REAL NOT NULL, tokens INTEGER NOT NULL,
            expires_us INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS spend_reservations_expiry ON spend_reservations(expires_us)",
        """CREATE TABLE IF NOT EXISTS prompt_ratio (
            model TEXT PRIMARY KEY, chars INTEGER NOT NULL, tokens INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TRIGGER IF NOT EXISTS calls_prompt_ratio AFTER INSERT ON calls
            WHEN NEW.usage_source = 'reported' AND NEW.prompt_chars > 0 AND NEW.prompt_tokens > 0
                AND NOT NEW.cached BEGIN
            INSERT INTO prompt_ratio (model, chars, tokens) VALUES (NEW.model, NEW.prompt_chars, NEW.prompt_tokens)
            ON CONFLICT (model) DO UPDATE SET chars = chars + excluded.chars, tokens = tokens + excluded.tokens;
        END""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

INSERT_COLUMNS = (
    "time_us", "source", "model", "status", "error", "http_status", "stream", "prompt_tokens",
    "completion_tokens", "total_tokens", "usage_source", "latency_s", "ttft_s", "finish_reason",
    "attempts", "request_id", "endpoint", "execution_count", "prompt", "text", "cost", "cached",
    "notebook", "user", "prompt_chars",
)
INSERT_SQL = (
    f"INSERT INTO calls ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
)
LABELLED = ("source", "model", "status", "usage_source", "endpoint", "finish_reason", "notebook", "user")
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


def _prompt_chars(prompt: str | list[str] | None) -> int | None:
    if prompt is None:
        return None
    return len(prompt) if isinstance(prompt, str) else sum(len(str(p)) for p in prompt)


def _login_name() -> str:
    global _LOGIN
    if _LOGIN is None:
        try:
            _LOGIN = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name (a container with a bare uid): leave it empty
            _LOGIN = ""
    return _LOGIN


_LOGIN: str | None = None


def call_user() -> str:
    """Who made the call: ``JUPYTERHUB_USER``, else the login name."""
    return os.environ.get("JUPYTERHUB_USER") or _login_name()


def row_values(rec: CallRecord, *, store_prompts: bool) -> tuple[Any, ...]:
    """The INSERT parameters for one record, in ``INSERT_COLUMNS`` order.

    The cost is worked out now, with the prices in force now: later price changes never
    rewrite it. A replayed (cached) call cost nothing, priced or not.
    """
    cost = 0.0 if rec.cached else cost_usd(str(rec.model or ""), rec.prompt_tokens, rec.completion_tokens)
    notebook = rec.notebook if rec.notebook is not None else notebook_path()
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
        cost,
        1 if rec.cached else 0,
        str(notebook or ""),
        call_user(),
        _prompt_chars(rec.prompt),
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
