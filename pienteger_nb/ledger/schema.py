"""The usage ledger's file: its SQLite schema, the migrations between versions, one row's values.

A file's ``PRAGMA user_version`` says which of ``MIGRATIONS`` it has had. Migration N takes a
file from version N to N + 1 and only adds (columns, indexes, tables), so an older file opens
and gains the new columns, and an older release can still write to a newer file.

Many kernels may open one file at the same instant (a JupyterHub user opening several
notebooks, every kernel after an upgrade). ``open_ledger`` makes that safe: creation and the
pending steps run in one ``BEGIN IMMEDIATE`` transaction that re-reads the version once it holds
the write lock, so exactly one process migrates and the others find the work done and go on;
the few places where SQLite answers "database is locked" without waiting (switching a new file
to WAL, a WAL being recovered) are retried until ``OPEN_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import json
import os
import random
import sqlite3
import time
from typing import Any

from ..kernel import notebook_path
from ..types import CallRecord
from .prices import cost_usd

MEMORY = ":memory:"
BUSY_TIMEOUT_S = 5.0
# How long opening waits for another process's migration: adding an index or filling a table
# over a ledger of millions of rows takes seconds on a slow disk, and giving up loses the kernel's
# ledger for the session.
OPEN_TIMEOUT_S = 120.0
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL = 5, 6, 10, 13
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
    (  # v6: budgets per user. Running totals per user and period, kept by a trigger like the
        # team's; each reservation says whose call holds it, so a user's budget counts only theirs.
        """CREATE TABLE IF NOT EXISTS spend_user_totals (
            user TEXT NOT NULL, period TEXT NOT NULL, usd REAL NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, period)
        ) WITHOUT ROWID""",
        *(
            f"""INSERT INTO spend_user_totals (user, period, usd, tokens)
                SELECT user, {key}, sum(ifnull(cost, 0)), sum(ifnull(total_tokens, 0))
                FROM calls WHERE NOT cached GROUP BY 1, 2"""
            for key in (
                "'day:' || strftime('%Y-%m-%d', time_us / 1000000, 'unixepoch')",
                "'month:' || strftime('%Y-%m', time_us / 1000000, 'unixepoch')",
                "'total'",
            )
        ),
        """CREATE TRIGGER IF NOT EXISTS calls_spend_user AFTER INSERT ON calls WHEN NOT NEW.cached BEGIN
            INSERT INTO spend_user_totals (user, period, usd, tokens) VALUES
                (NEW.user, 'day:' || strftime('%Y-%m-%d', NEW.time_us / 1000000, 'unixepoch'),
                 ifnull(NEW.cost, 0), ifnull(NEW.total_tokens, 0)),
                (NEW.user, 'month:' || strftime('%Y-%m', NEW.time_us / 1000000, 'unixepoch'),
                 ifnull(NEW.cost, 0), ifnull(NEW.total_tokens, 0)),
                (NEW.user, 'total', ifnull(NEW.cost, 0), ifnull(NEW.total_tokens, 0))
            ON CONFLICT (user, period) DO UPDATE SET usd = usd + excluded.usd, tokens = tokens + excluded.tokens;
        END""",
        "ALTER TABLE spend_reservations ADD COLUMN user TEXT NOT NULL DEFAULT ''",
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


def text_without_surrogates(value: str) -> str:
    """``value`` as valid Unicode: surrogate pairs joined, a lone surrogate replaced by U+FFFD."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def row_without_surrogates(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row with every text made storable (SQLite refuses a lone surrogate: UTF-8 has none)."""
    return tuple(text_without_surrogates(v) if isinstance(v, str) else v for v in row)


def connect(path: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in autocommit mode (each statement is its own transaction), WAL, NORMAL sync."""
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        if path != MEMORY:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(exc: BaseException) -> bool:
    """Whether SQLite said "database is locked" (or "table is locked"): worth another try."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


def open_ledger(path: str, *, timeout_s: float = OPEN_TIMEOUT_S) -> tuple[sqlite3.Connection, int]:
    """A connection to ``path`` with the schema brought up to date; and the file's version.

    Retries, until ``timeout_s``, what SQLite refuses at once when other processes are creating
    or migrating the same file; any other error is raised as it is.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        conn = None
        try:
            conn = connect(path)
            return conn, migrate(conn, wait_s=timeout_s)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if not is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        # Jitter: processes released together must not retry together.
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 0.05)


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


class MigrationError(sqlite3.OperationalError):
    """A migration step failed; the file is left at ``version`` (the step was rolled back)."""

    def __init__(self, message: str, *, version: int, target: int) -> None:
        super().__init__(message)
        self.version, self.target = version, target


def migrate(conn: sqlite3.Connection, *, wait_s: float = OPEN_TIMEOUT_S) -> int:
    """Bring the file up to SCHEMA_VERSION (a newer file is left alone); returns its version now.

    ``wait_s``: how long to wait for another process that holds the write lock (migrating).
    """
    # A file already up to date costs one read, no write lock: most opens are of such files.
    version = _user_version(conn)
    if version >= SCHEMA_VERSION:
        return version
    # IMMEDIATE takes the write lock first (waiting for a process that is migrating), so the
    # version read next is the one this transaction will change: two processes opening an old
    # file at once never both run the same step.
    conn.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:  # a row waits for another writer no longer than before
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    version = start = _user_version(conn)
    try:
        for step in range(start, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
            version = step + 1
        if version != start:
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException as exc:
        # A full disk or an I/O error has already rolled the transaction back: a second ROLLBACK
        # would fail with "cannot rollback - no transaction is active" and hide the real cause.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error) and not is_busy(exc):
            raise MigrationError(
                f"upgrading its schema from version {start} to {SCHEMA_VERSION} failed ({exc}); the file "
                f"is unchanged", version=start, target=SCHEMA_VERSION,
            ) from exc
        raise
    return version


def advice(exc: BaseException) -> str:
    """What to do about an error opening or reading a ledger, from SQLite's own cause."""
    cause = exc.__cause__ if isinstance(exc, MigrationError) else exc
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == SQLITE_FULL:
        return "free some space on its disk, or set PIENTEGER_USAGE_DB to a file on another disk (or :memory:)"
    if code is not None and code & 0xFF == SQLITE_IOERR:  # also what a disk too full for the WAL index says
        return "check that its disk has free space and is writable, or set PIENTEGER_USAGE_DB to another file (or :memory:)"
    return "set PIENTEGER_USAGE_DB to a writable file (or :memory:)"
