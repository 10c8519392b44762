"""The usage ledger on PostgreSQL, for a team sharing one database (``PIENTEGER_USAGE_DB=postgresql://...``).

The table has the SQLite ledger's columns: they are read from the SQLite schema itself (an
in-memory file migrated to the newest version), so a column added there appears here too, and
the ``schema_version`` table holds the same version number. Migrations run under an advisory
lock, so kernels starting together do not run a step twice.

Each process keeps a small pool of connections (psycopg_pool is not a dependency). A broken
connection (the server restarted) is dropped and the work retried once on a fresh one. When
the server cannot be reached a row goes to the local spool (``spool.py``) and is sent before
the next row recorded once the server answers again, so a call never fails for the ledger.

Each row carries a random ``row_uid`` (unique): a spooled row sent twice is stored once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self

from .. import config
from ..types import CallRecord
from .cache import ReplayCacheError
from .failure import UsageLogError
from .pgcache import PostgresReplayCache
from .pgpool import Pool
from .pgschema import migrate_postgres, quoted
from .schema import INSERT_COLUMNS, row_values
from .spool import Spool, spool_path_for

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import psycopg

    from .frame import When
    from .views import Prices

# After a failed connection, rows go straight to the spool for this long: a server that is
# down (or a host that swallows packets) must not add a connect timeout to every call.
RETRY_AFTER_S = 2.0
INSERT_SQL = (
    f"INSERT INTO calls (row_uid, {', '.join(map(quoted, INSERT_COLUMNS))}) "
    f"VALUES ({', '.join(['%s'] * (len(INSERT_COLUMNS) + 1))}) ON CONFLICT (row_uid) DO NOTHING"
)


class TeamLedgerError(UsageLogError):
    """The team ledger's server could not be used (unreachable, login refused); the password masked."""


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def explain_failure(exc: BaseException, url: str) -> str:
    """Why the server could not be used, in one line, the password masked."""
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password or ""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = _scrub(detail, [password, unquote(password)])
    lowered = str(exc).lower()
    import psycopg

    if isinstance(exc, psycopg.Error) and not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        reason = "the server refused the query"
    elif "password" in lowered or "authentication" in lowered or "pg_hba" in lowered or "role" in lowered:
        reason = "login refused"
    elif "does not exist" in lowered:
        reason = "no such database"
    else:
        reason = "unreachable"
    return f"{reason} ({detail})"


class PostgresLog:
    """The ledger in the PostgreSQL database at ``url``; the same methods as ``UsageLog``.

    ``spool``: the local file rows wait in while the server is down (default: next to the
    default SQLite ledger). ``clock``: monotonic seconds, for the pause between reconnect tries.
    """

    def __init__(
        self, url: str, *, store_prompts: bool | None = None, spool: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._url = url
        self.path = config.mask_url(url)  # what is shown: never the password
        self.store_prompts = store_prompts
        self._pool = Pool(url)
        self._spool = Spool(spool if spool is not None else spool_path_for(url))
        self._clock = clock
        self._down_since: float | None = None
        self._closed = False
        self._send_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresLog({self.path!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._pool.clear()
        self._spool.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def spool_path(self) -> str:
        return self._spool.path

    @property
    def waiting(self) -> int:
        """How many rows wait in the local spool for the server."""
        return self._spool.count()

    def _store(self) -> bool:
        return bool(config.get("store_prompts")) if self.store_prompts is None else self.store_prompts

    def _failure(self, exc: BaseException) -> TeamLedgerError:
        return TeamLedgerError(
            f"cannot use the team ledger at {self.path}: {explain_failure(exc, self._url)}; check "
            "PIENTEGER_USAGE_DB (host, port, user, password) and that the server is running"
        )

    def open(self) -> int:
        """Connect and migrate now (``pienteger-nb ledger migrate``); returns the schema version."""
        import psycopg

        try:
            return self._pool.run(migrate_postgres)
        except psycopg.Error as exc:
            raise self._failure(exc) from None

    def available(self) -> bool:
        """False for a moment after the server could not be reached (rows then go to the spool)."""
        return self._down_since is None or self._clock() - self._down_since >= RETRY_AFTER_S

    def mark_down(self) -> None:
        """The server could not be reached: skip it (spool rows, find no replays) for a moment."""
        if self._down_since is None:
            self._down_since = self._clock()

    @functools.cached_property
    def replay_cache(self) -> PostgresReplayCache:
        """The replay cache in this database."""
        return PostgresReplayCache(self)

    def record(self, rec: CallRecord) -> None:
        """Write one call as one row: committed on the server, or kept in the spool if it is down
        (and file or count its answer in the replay cache when the call may be replayed)."""
        store = self._store()
        self._send([(uuid.uuid4().hex, row_values(rec, store_prompts=store))])
        if rec.cache_key is not None and self._down_since is None:
            try:
                self.replay_cache.file(rec, store_prompts=store)
            except ReplayCacheError as exc:  # the row is written; only the stored answer is missing
                warnings.warn(str(exc), RuntimeWarning, stacklevel=2)

    def record_many(self, records: Iterable[CallRecord]) -> int:
        """Write many records in one transaction; returns how many."""
        store = self._store()
        rows = [(uuid.uuid4().hex, row_values(rec, store_prompts=store)) for rec in records]
        self._send(rows)
        return len(rows)

    def insert_rows(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Insert (row_uid, values in ``INSERT_COLUMNS`` order) rows now; raises when the server is down."""
        import psycopg

        try:
            self._pool.run(lambda conn: self._insert(conn, rows))
        except psycopg.Error as exc:
            raise self._failure(exc) from None

    @staticmethod
    def _insert(conn: psycopg.Connection[Any], rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        if len(rows) == 1:
            conn.execute(INSERT_SQL, (rows[0][0], *rows[0][1]))
            return
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(INSERT_SQL, [(uid, *values) for uid, values in rows])

    def _send(self, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
        import psycopg

        if self._closed:
            raise TeamLedgerError(f"the usage ledger at {self.path} is closed")
        if self._down_since is not None and self._clock() - self._down_since < RETRY_AFTER_S:
            self._spool.add(rows)
            return
        try:
            if self._spool.count():
                self._flush_spool()
            self._pool.run(lambda conn: self._insert(conn, rows))
        except psycopg.Error as exc:
            first = self._down_since is None
            self._down_since = self._clock()
            self._spool.add(rows)
            if first:
                warnings.warn(
                    f"{self._failure(exc)}. The call's row waits in {self._spool.path} and is sent "
                    "at the next recorded call once the server answers",
                    RuntimeWarning, stacklevel=4,
                )
            return
        self._down_since = None

    def _flush_spool(self) -> None:
        # One sender at a time per process; rows sent twice by two processes meet ON CONFLICT.
        with self._send_lock:
            while True:
                batch = self._spool.peek()
                if not batch:
                    return
                self._pool.run(functools.partial(self._insert, rows=batch))
                self._spool.remove([uid for uid, _ in batch])

    def __len__(self) -> int:
        import psycopg

        try:
            row = self._pool.run(lambda conn: conn.execute("SELECT count(*) FROM calls").fetchone())
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        return int(row[0]) if row is not None else 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection to read from; a clear ``TeamLedgerError`` when the server cannot be used."""
        import psycopg

        try:
            conn, _ = self._pool._take()
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        try:
            yield conn
        except psycopg.Error as exc:
            conn.close()
            raise self._failure(exc) from None
        except BaseException:
            conn.close()
            raise
        self._pool._give(conn)

    def read_frame(
        self, *, since: When = None, until: When = None, model: Any = None, source: Any = None,
        columns: Iterable[str] | None = None, text: bool | None = None,
    ) -> pd.DataFrame:
        """The selected calls as a DataFrame (see ``usage()``), read by ``pgframe``."""
        import psycopg

        from .pgframe import read_pg_frame

        def read(conn: psycopg.Connection[Any]) -> pd.DataFrame:
            return read_pg_frame(
                conn, since=since, until=until, model=model, source=source, columns=columns, text=text,
                helper=self._pool.run,
            )

        try:  # through the pool's run: a connection broken by a server restart is replaced
            return self._pool.run(read)
        except psycopg.Error as exc:
            raise self._failure(exc) from None

    def frame(
        self, since: When = None, until: When = None, *, model: str | Iterable[str] | None = None,
        source: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """The calls as a DataFrame, oldest first (columns and dtypes: ``usage()``)."""
        return self.read_frame(since=since, until=until, model=model, source=source)

    def summary(
        self, by: str = "model", *, since: When = None, until: When = None, prices: Prices | None = None
    ) -> pd.DataFrame:
        """One row per model, day or source (see ``usage_summary()``)."""
        from .views import summarize_log

        readable: Any = self  # summarize_log calls our read_frame, not the SQLite reader
        return summarize_log(readable, by=by, since=since, until=until, prices=prices)

    def summary_text(self, by: str = "model", *, since: When = None, prices: Prices | None = None) -> str:
        """The summary as a plain-text table, with how many rows wait in the spool."""
        from .views import format_summary

        text = format_summary(self.summary(by, since=since, prices=prices), ledger=self.path, since=since)
        note = self.waiting_note()
        return f"{text}\n{note}" if note else text

    def waiting_note(self) -> str:
        """A line saying how many rows wait for the server, or "" when none do."""
        count = self.waiting
        if not count:
            return ""
        rows = "1 row waits" if count == 1 else f"{count:,} rows wait"
        return f"{rows} in the local spool ({self._spool.path}) for the team ledger; sent at the next recorded call."

    def export(self, path: str | os.PathLike[str], **selection: Any) -> Any:
        """Write the rows to ``path``: CSV, or parquet when the name ends in ``.parquet``."""
        from .views import export_frame

        frame = self.frame(**selection)
        try:
            return export_frame(frame, path)
        except OSError as exc:
            raise UsageLogError(f"cannot write the rows to {os.fspath(path)}: {exc.strerror or exc}") from exc

    def plot(self, *, freq: str | None = None, ax: Any = None, **selection: Any) -> Any:
        """Tokens over time by model (matplotlib Axes); needs matplotlib."""
        from .views import plot_frame

        return plot_frame(self.frame(**selection), freq=freq, ax=ax)


__all__ = ["PostgresLog", "TeamLedgerError", "explain_failure"]
