"""The local spool: rows that wait in a SQLite file while the team ledger's server is down.

One file per database (named by a hash of its URL without the password), next to the default
SQLite ledger. Each row keeps its ``row_uid``, so a row sent twice (a send that reached the
server but not its answer, or two kernels sharing the file) is stored once on the server.
The spool is bounded: past ``MAX_ROWS`` a new row is refused with a warning rather than
filling the disk of a machine whose server never comes back.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .schema import BUSY_TIMEOUT_S, INSERT_COLUMNS

MAX_ROWS = 100_000
BATCH = 1_000


def data_dir() -> Path:
    """The folder the default SQLite ledger lives in (``$XDG_DATA_HOME/pienteger_nb``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pienteger_nb"


def spool_path_for(url: str) -> str:
    """The spool file for the database at ``url`` (the password does not enter the name)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    ident = f"{parts.username or ''}@{host}:{parts.port or ''}{parts.path}"
    digest = hashlib.blake2b(ident.encode(), digest_size=6).hexdigest()
    return str(data_dir() / f"team-spool-{digest}.sqlite")


class Spool:
    """Rows (row_uid, values in ``INSERT_COLUMNS`` order) waiting for the server, oldest first."""

    def __init__(self, path: str | os.PathLike[str], *, max_rows: int = MAX_ROWS):
        self.path = os.fspath(path)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def _connection(self) -> sqlite3.Connection:
        # Call with the lock held. Opened on first use: most processes never spool a row.
        if self._conn is None or self._pid != os.getpid():
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Values are kept by column name: a newer release that adds columns still reads them.
            conn.execute(
                "CREATE TABLE IF NOT EXISTS spool (n INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, row TEXT NOT NULL)"
            )
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def count(self) -> int:
        """Rows waiting (0 without touching the disk when no spool file exists)."""
        with self._lock:
            if self._conn is None and not os.path.exists(self.path):
                return 0
            return int(self._connection().execute("SELECT count(*) FROM spool").fetchone()[0])

    def add(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> int:
        """Keep rows until they can be sent; returns how many were kept (fewer when full)."""
        with self._lock:
            conn = self._connection()
            room = self.max_rows - int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
            kept = list(rows)[: max(room, 0)]
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO spool (uid, row) VALUES (?, ?)",
                    [(uid, json.dumps(dict(zip(INSERT_COLUMNS, values)))) for uid, values in kept],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if len(kept) < len(rows):
            warnings.warn(
                f"the team ledger's spool at {self.path} is full ({self.max_rows:,} rows): "
                f"{len(rows) - len(kept)} row(s) not kept; bring the database back or point "
                "PIENTEGER_USAGE_DB at a SQLite file",
                RuntimeWarning, stacklevel=3,
            )
        return len(kept)

    def peek(self, limit: int = BATCH) -> list[tuple[str, tuple[Any, ...]]]:
        """The oldest rows waiting, values in this release's ``INSERT_COLUMNS`` order."""
        with self._lock:
            if self._conn is None and not os.path.exists(self.path):
                return []
            found = self._connection().execute("SELECT uid, row FROM spool ORDER BY n LIMIT ?", (limit,)).fetchall()
        rows = []
        for uid, text in found:
            values = json.loads(text)
            rows.append((uid, tuple(values.get(name) for name in INSERT_COLUMNS)))
        return rows

    def remove(self, uids: Sequence[str]) -> None:
        """Forget rows the server now holds."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM spool WHERE uid = ?", [(uid,) for uid in uids])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


__all__ = ["MAX_ROWS", "Spool", "data_dir", "spool_path_for"]
