"""The usage ledger: every API call as one row in a SQLite file, read back as pandas DataFrames.

``UsageLog(path)`` owns one file (or ``":memory:"``). Each ``record()`` is its own committed
transaction in WAL mode with ``synchronous=NORMAL``: a row written survives the process being
killed, and a crash never leaves half a row (it does not fsync per row, so a power cut may lose
the last rows; ``CONTRACT.md`` explains the trade). One connection, guarded by a lock, takes
rows from any number of threads; ``busy_timeout`` lets several processes share a file.

The schema is versioned (``schema.py``): opening an older file migrates it in place (new
columns only), so ledgers written by earlier releases keep working; any number of processes may
open, create or migrate one file at once (``schema.open_ledger``). A file deleted while open is
started again without losing the rows written into it (``watch.py``); calls ``record_call`` could
not record are counted (``unrecorded.py``) and shown by ``%pienteger usage`` and ``usage()``.

pandas is imported only inside the functions that build frames: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from .. import config
from ..types import CallRecord
from .cache import ReplayCacheError, cache_of
from .failure import UsageLogError
from .schema import (
    BUSY_TIMEOUT_S,
    INSERT_SQL,
    LABEL_AT,
    LABEL_SQL,
    LABELLED,
    MEMORY,
    advice,
    open_ledger,
    row_values,
    row_without_surrogates,
)
from .watch import FileWatch

if TYPE_CHECKING:  # pragma: no cover

    import pandas as pd

    from .frame import When
    from .views import Prices


def resolve_path(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if text == MEMORY:
        return MEMORY
    return os.path.abspath(os.path.expanduser(text))


class UsageLog:
    """The ledger at ``path`` (created with its folders when missing; ``":memory:"`` for none).

    ``store_prompts``: keep prompts and completions too; ``None`` reads the ``store_prompts``
    setting at each ``record()``.
    """

    def __init__(self, path: str | os.PathLike[str], *, store_prompts: bool | None = None):
        self.path = resolve_path(path)
        self.store_prompts = store_prompts
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._watch = FileWatch(self.path)
        self._conn: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn, self.schema_version = open_ledger(self.path)
            try:
                self._labels: set[tuple[str, str]] = set(conn.execute("SELECT name, value FROM labels"))
                self._watch.opened()
            except BaseException:
                conn.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            raise UsageLogError(f"cannot open the usage ledger at {self.path}: {exc}; {advice(exc)}") from exc
        return conn

    def __repr__(self) -> str:
        return f"UsageLog({self.path!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; rows already recorded are on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _connection(self) -> sqlite3.Connection:
        # Call with self._lock held.
        if self._conn is None:
            raise UsageLogError(f"the usage ledger at {self.path} is closed")
        if self._pid != os.getpid() and self.path != MEMORY:
            # A connection must not cross fork(); the child gets its own.
            self._conn = self._open()
            self._pid = os.getpid()
            self._watch.forget()
        return self._conn

    def _rows_to_write_again(self, *, now: bool = False) -> list[tuple[Any, ...]]:
        """Rows that went into a file deleted since (almost always none); call with the lock held.

        Looks at the file when a look is due (``watch.py``) or ``now``; a file that has gone is
        opened again (created) at its path. When that fails, the old connection stays, the rows
        stay kept, and the caller hears why; the next record or read tries again.
        """
        watch = self._watch
        if now or watch.due():
            replaced = watch.replaced()
            if replaced:
                assert self._conn is not None
                conn = self._open()
                self._conn.close()
                self._conn = conn
            watch.looked(replaced=replaced)
        return watch.lost

    def _store(self) -> bool:
        return bool(config.get("store_prompts")) if self.store_prompts is None else self.store_prompts

    def record(self, rec: CallRecord) -> None:
        """Write one call as one row, committed before this returns (and file or count its
        answer in the replay cache when the call may be replayed).

        Text that is not valid Unicode (a lone surrogate in an error message, a model name, a
        prompt) is stored with U+FFFD in its place rather than losing the row.
        """
        store = self._store()
        self._write([row_values(rec, store_prompts=store)])
        if rec.cache_key is not None:
            try:
                cache_of(self).file(rec, store_prompts=store)
            except ReplayCacheError as exc:
                raise UsageLogError(str(exc)) from exc

    def record_many(self, records: Iterable[CallRecord]) -> int:
        """Write many records in one transaction (imports, tests); returns how many."""
        store = self._store()
        rows = [row_values(rec, store_prompts=store) for rec in records]
        self._write(rows)
        return len(rows)

    def _write(self, rows: list[tuple[Any, ...]], *, text_checked: bool = False) -> None:
        written = rows
        try:
            with self._lock:
                conn = self._connection()
                watch = self._watch
                if watch.lost or time.monotonic() >= watch.next_look:  # watch.due(), inline: per row
                    written = self._rows_to_write_again() + rows  # may open the file again
                    conn = self._connection()
                new = {
                    (name, row[at]) for row in written for name, at in zip(LABELLED, LABEL_AT)
                    if row[at] is not None and (name, row[at]) not in self._labels
                }
                if not new and len(written) == 1:
                    conn.execute(INSERT_SQL, written[0])  # autocommit: its own transaction
                    watch.unchecked.append(written[0])
                    if watch.lost:
                        watch.lost = []
                    return
                # A new label goes in with its row, so a reader never sees one without the other.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(LABEL_SQL, sorted(new))
                    conn.executemany(INSERT_SQL, written)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                self._labels.update(new)
                watch.written(written)
        except UnicodeEncodeError:
            if text_checked:
                raise
            # Made valid only when SQLite refuses a text: the usual row pays nothing for it.
            self._write([row_without_surrogates(row) for row in rows], text_checked=True)
        except (sqlite3.Error, OverflowError) as exc:  # OverflowError: an integer past SQLite's 64 bits
            raise UsageLogError(f"could not record in the usage ledger at {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """The writer's connection inside one ``BEGIN IMMEDIATE`` transaction, committed at the end.

        IMMEDIATE takes the file's write lock first, so a check and the write it decides on are
        one step for every thread and process sharing the file (the budget's reservations).
        """
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on the writer's connection (its own transaction); the rows it returns."""
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT count(*) FROM calls").fetchone()[0])

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection to read from, for as long as the ``with`` lasts.

        A file gets a fresh connection, so a long read never blocks ``record()`` (WAL lets a
        reader and a writer work at once); an in-memory ledger has only its own connection.
        """
        if self.path == MEMORY:
            with self._lock:
                yield self._connection()
            return
        if self._conn is None:
            raise UsageLogError(f"the usage ledger at {self.path} is closed")
        with self._lock:
            pending = bool(self._rows_to_write_again(now=True))
        if pending:  # a read sees every row recorded, also after the file was deleted
            with contextlib.suppress(UsageLogError):  # still kept: the next record() tries again
                self._write([])
        try:
            # mode=rw: a ledger deleted since it was opened is an error, not a new empty file.
            conn = sqlite3.connect(f"{Path(self.path).as_uri()}?mode=rw", timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, uri=True)
            try:
                yield conn
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise UsageLogError(f"cannot read the usage ledger at {self.path}: {exc}; {advice(exc)}") from exc

    def frame(
        self, since: When = None, until: When = None, *, model: str | Iterable[str] | None = None,
        source: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """The calls as a DataFrame, oldest first (columns and dtypes: ``usage()``)."""
        from .frame import read_frame

        return read_frame(self, since=since, until=until, model=model, source=source)

    def summary(
        self, by: str = "model", *, since: When = None, until: When = None, prices: Prices | None = None
    ) -> pd.DataFrame:
        """One row per model, day or source (see ``usage_summary()``)."""
        from .views import summarize_log

        return summarize_log(self, by=by, since=since, until=until, prices=prices)

    def summary_text(self, by: str = "model", *, since: When = None, prices: Prices | None = None) -> str:
        """The summary as a plain-text table for a terminal."""
        from .views import format_summary

        return format_summary(self.summary(by, since=since, prices=prices), ledger=self.path, since=since)

    def export(
        self, path: str | os.PathLike[str], *, since: When = None, until: When = None,
        model: str | Iterable[str] | None = None, source: str | Iterable[str] | None = None,
    ) -> Path:
        """Write the rows to ``path``: CSV, or parquet when the name ends in ``.parquet``."""
        from .views import export_frame

        frame = self.frame(since, until, model=model, source=source)
        try:
            return export_frame(frame, path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.filename and os.fspath(exc.filename) != os.fspath(path):  # a folder on the way
                reason += f": {exc.filename}"
            raise UsageLogError(f"cannot write the rows to {os.fspath(path)}: {reason}") from exc

    def plot(
        self, *, since: When = None, until: When = None, model: str | Iterable[str] | None = None,
        source: str | Iterable[str] | None = None, freq: str | None = None, ax: Any = None,
    ) -> Any:
        """Tokens over time by model (matplotlib Axes); needs matplotlib."""
        from .views import plot_frame

        return plot_frame(self.frame(since, until, model=model, source=source), freq=freq, ax=ax)


__all__ = ["UsageLog", "UsageLogError", "resolve_path"]
