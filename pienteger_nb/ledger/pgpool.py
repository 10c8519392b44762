"""A small pool of psycopg connections per process (psycopg_pool is not a dependency).

A connection taken from the pool that turns out broken (the server restarted) is dropped,
with every idle one, and the work is retried once on a fresh connection. Connections never
cross ``fork()``: a child forgets its parent's and opens its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .pgschema import migrate_postgres

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 5
T = TypeVar("T")


class Pool:
    """Idle psycopg connections for this process, handed to one thread at a time."""

    def __init__(self, url: str, *, size: int = POOL_SIZE):
        self.url = url
        self.size = size
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.migrated = False

    def _fresh(self) -> psycopg.Connection[Any]:
        import psycopg

        options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.url:
            options["connect_timeout"] = CONNECT_TIMEOUT_S
        if "options" not in self.url:
            # A commit does not wait for the server's WAL flush: the SQLite ledger's
            # synchronous=NORMAL trade (a killed kernel loses nothing; a server crash may lose
            # the last fraction of a second of rows, never corrupts). A URL with its own
            # options=-csynchronous_commit=on (or any options) keeps the server's setting.
            options["options"] = "-c synchronous_commit=off"
        conn = psycopg.connect(self.url, **options)
        if not self.migrated:
            migrate_postgres(conn)
            self.migrated = True
        return conn

    def _take(self) -> tuple[psycopg.Connection[Any], bool]:
        with self._lock:
            if self._pid != os.getpid():
                # A connection must not cross fork(): the child forgets the parent's (closing
                # them would close the parent's sessions too) and opens its own.
                self._idle = []
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop(), True
        return self._fresh(), False

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        import psycopg

        healthy = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._lock:
            if healthy and len(self._idle) < self.size and self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(conn)`` on a pooled connection; once more on a fresh one if the pooled one had broken."""
        import psycopg

        conn, reused = self._take()
        try:
            result = work(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            conn.close()
            if not reused:
                raise
            self.clear()  # the server went away: every idle connection is as dead as this one
            conn, _ = self._take()
            try:
                result = work(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        self._give(conn)
        return result

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


__all__ = ["CONNECT_TIMEOUT_S", "POOL_SIZE", "Pool"]
