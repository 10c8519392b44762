"""Connections: accept them, park idle ones without a thread, serve requests on a bounded pool.

A thread per connection (``ThreadingHTTPServer``) lets 1,000 idle keep-alive sockets hold 1,000
threads for ever. Here one thread accepts connections and watches every idle one with a selector;
a connection has a worker thread only while a request is in it, and goes back to the selector
between requests. Idle connections are closed after ``idle_timeout``. Past ``max_connections``
the longest-idle one is closed to make room, so a burst of idle sockets cannot starve a fresh
client; only when every connection is mid-request does a newcomer get a 503.
"""

from __future__ import annotations

import errno
import selectors
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

from .wire import error_body, response

_ACCEPT_BATCH = 64  # accepts per wake-up, so a flood of connects cannot starve parked connections
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.1  # seconds without accepting when the process is out of file descriptors
# How long a worker waits on its connection for the next request before parking it. A client
# in a loop (a batch, a benchmark) sends within a millisecond: serving it on the same thread
# saves two thread hand-offs and wake-ups a request. A notebook user takes seconds: parked.
# Short, so workers lingering on quiet connections barely delay a newcomer.
_LINGER = 0.01


class Session(Protocol):
    """One connection's HTTP state (``handler.EmulatorHandler``)."""

    def serve_one(self) -> bool:
        """Serve the next request; True when the connection stays open for another."""
        ...

    def pending(self, wait: float) -> bool:
        """True when the next request's bytes arrive within ``wait`` seconds (or are buffered)."""
        ...

    def close(self) -> None: ...


OpenSession = Callable[[socket.socket, Any], Session]


def default_max_connections() -> int:
    """Half the process's file descriptors, at most 4,096 (512 where select() is the only selector)."""
    try:
        import resource
    except ImportError:  # Windows: select() there watches at most 512 sockets
        return 512
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2))


class _Conn:
    """An accepted connection; its session is made by the first worker that serves it."""

    __slots__ = ("address", "session", "since", "sock")

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.session: Session | None = None
        self.since = time.monotonic()  # when it was last parked

    def close(self) -> None:
        try:
            if self.session is not None:
                self.session.close()
            else:
                self.sock.close()
        except OSError:
            pass


class Workers:
    """Up to ``limit`` daemon threads, started on demand, each running ``run(job)`` for queued jobs.

    A worker idle for ``linger`` seconds ends, so a burst does not leave its threads behind.
    """

    def __init__(self, run: Callable[[_Conn], None], *, limit: int, name: str, linger: float = 30.0) -> None:
        self._run = run
        self._limit = limit
        self._name = name
        self._linger = linger
        self._cond = threading.Condition()
        self._jobs: deque[_Conn] = deque()
        self._idle = 0  # workers waiting for a job (counted until they take one or leave)
        self._threads: set[threading.Thread] = set()
        self._started = 0
        self._closed = False

    def submit(self, job: _Conn) -> bool:
        """Queue ``job``; False when no worker can ever run it (closed, or no thread to be had)."""
        with self._cond:
            if self._closed:
                return False
            self._jobs.append(job)
            if self._idle >= len(self._jobs):
                self._cond.notify()
            elif len(self._threads) < self._limit:
                self._started += 1
                thread = threading.Thread(target=self._work, name=f"{self._name}:{self._started}", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # the system will not give another thread
                    if not self._threads:  # and none will ever take the job: the caller closes it
                        self._jobs.pop()
                        return False
                else:
                    self._threads.add(thread)
            # else: all workers are busy; the first to finish takes it
            return True

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._idle += 1
                    woke = self._cond.wait(self._linger)
                    self._idle -= 1
                    if not woke and not self._jobs:
                        self._threads.discard(me)
                        return
                if not self._jobs:  # closed
                    self._threads.discard(me)
                    return
                job = self._jobs.popleft()
            self._run(job)

    def close(self, deadline: float) -> list[_Conn]:
        """Stop taking jobs and wait (until ``deadline``) for the workers; returns the jobs never started."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
            left = list(self._jobs)
            self._jobs.clear()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
        return left


class Connections:
    """Serves ``listener``'s connections (see the module docstring); ``start()``, then ``close()``."""

    def __init__(self, listener: socket.socket, open_session: OpenSession, *, idle_timeout: float,
                 max_connections: int, max_threads: int, name: str) -> None:
        self._listener = listener
        self._open_session = open_session
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Only the accepting thread touches the selector and _parked (oldest first); workers hand
        # connections back through _returns and a byte on the wake socket.
        self._parked: OrderedDict[_Conn, None] = OrderedDict()
        self._lock = threading.Lock()  # guards _busy, _returns and _open
        self._busy: set[_Conn] = set()
        self._returns: deque[_Conn] = deque()
        self._open = 0
        self._closing = False
        self._paused_until: float | None = None
        self._workers = Workers(self._serve, limit=max_threads, name=name.replace(":", "-worker:", 1))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop accepting, close idle connections, cut busy ones off, and wait for the threads."""
        deadline = time.monotonic() + timeout
        self._closing = True
        self._wake()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            busy = list(self._busy)
        for conn in busy:  # wakes a worker blocked reading or writing; it then closes the connection
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for conn in self._workers.close(deadline):
            conn.close()
        with self._lock:  # handed back after the accepting thread left
            returned = list(self._returns)
            self._returns.clear()
        for conn in returned:
            conn.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the accepting thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                for key, _ in self._selector.select(self._next_deadline()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._drain_wake()
                    elif key.data in self._parked:  # not closed earlier in this same batch
                        self._dispatch(key.data)
                self._take_returns()
                self._expire()
        finally:
            self._selector.close()
            self._listener.close()
            for conn in list(self._parked):
                self._drop(conn)

    def _next_deadline(self) -> float | None:
        now = time.monotonic()
        waits = []
        if self._parked:
            oldest = next(iter(self._parked))
            waits.append(oldest.since + self._idle_timeout - now)
        if self._paused_until is not None:
            waits.append(self._paused_until - now)
        return max(min(waits), 0.0) if waits else None

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES and not self._evict_oldest():
                    # Nothing idle to close: stop accepting a moment instead of spinning on the error.
                    self._selector.unregister(self._listener)
                    self._paused_until = time.monotonic() + _ACCEPT_PAUSE
                    return
                continue  # a client that left before it was accepted, or room just made
            with self._lock:
                full = self._open >= self._max_connections
            if full and not self._evict_oldest():
                _refuse(sock)
                continue
            with self._lock:
                self._open += 1
            self._park(_Conn(sock, address))

    def _park(self, conn: _Conn) -> None:
        conn.since = time.monotonic()
        self._parked[conn] = None
        try:
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        except (OSError, ValueError):  # closed meanwhile (stop() cut it off)
            del self._parked[conn]
            self._closed(conn)

    def _dispatch(self, conn: _Conn) -> None:
        del self._parked[conn]
        self._selector.unregister(conn.sock)
        with self._lock:
            self._busy.add(conn)
        if not self._workers.submit(conn):
            self._finish(conn)

    def _drop(self, conn: _Conn) -> None:
        """Close a parked connection."""
        del self._parked[conn]
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self._closed(conn)

    def _evict_oldest(self) -> bool:
        if not self._parked:
            return False
        self._drop(next(iter(self._parked)))
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        while self._parked:
            oldest = next(iter(self._parked))
            if oldest.since + self._idle_timeout > now:
                break
            self._drop(oldest)
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ)

    def _take_returns(self) -> None:
        with self._lock:
            returned = list(self._returns)
            self._returns.clear()
        for conn in returned:
            self._park(conn)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is already pending) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _closed(self, conn: _Conn) -> None:
        conn.close()
        with self._lock:
            self._open -= 1

    # -- worker threads ------------------------------------------------------------------------

    def _serve(self, conn: _Conn) -> None:
        """Serve requests on ``conn`` while they keep coming, then hand it back to be parked."""
        try:
            if conn.session is None:
                conn.session = self._open_session(conn.sock, conn.address)
            while not self._closing and conn.session.serve_one():
                if not conn.session.pending(_LINGER):
                    with self._lock:
                        self._busy.discard(conn)
                        self._returns.append(conn)
                    self._wake()
                    return
        except OSError:
            pass  # the client left, or stop() cut the connection off
        except Exception as exc:  # noqa: BLE001 - one bad connection must not end a worker silently
            print(f"pienteger emulator: connection from {conn.address!r} ended by "
                  f"{type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        with self._lock:
            self._busy.discard(conn)
        self._closed(conn)


def _refuse(sock: socket.socket) -> None:
    """A 503 for a newcomer while every connection is mid-request; never blocks the accepting thread."""
    body = error_body("The emulator is serving its maximum number of connections; try again shortly.",
                      type="server_error", code="too_many_connections")
    try:
        sock.setblocking(False)
        sock.send(response(503, {"Content-Type": "application/json", "Retry-After": "1",
                                 "Connection": "close"}, body))
    except OSError:
        pass
    sock.close()
