"""``Emulator``: the local Pienteger server in a background thread, its knobs and its records."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any, Self

from .faults import Fault, FaultQueue
from .handler import ROOT, EmulatorHandler
from .records import RateWindow, ReceivedRequest, masked_headers

DEFAULT_KEY = "emulator-key"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall on a machine without DNS.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a client that left is not news
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class Emulator:
    """A Pienteger-compatible server on loopback, for tests, demos and offline work.

    ``with Emulator(api_key="k") as emu:`` serves at ``emu.url`` until the block ends. ``latency``,
    ``tokens_per_second``, ``rpm``, ``getmodels_only`` and ``natural_end`` may be changed while it
    runs. ``emu.requests`` lists what it received; ``queue_fault`` breaks the next /completions calls.
    """

    def __init__(self, api_key: str = DEFAULT_KEY, *, host: str = "127.0.0.1", port: int = 0,
                 latency: float = 0.0, tokens_per_second: float | None = None, rpm: int | None = None,
                 getmodels_only: bool = False, natural_end: bool = True, max_body: int = 1 << 20,
                 max_records: int = 10_000, log: Callable[[str], None] | None = None) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty: clients must send some key")
        self.api_key = api_key
        self.host = host
        self.port = port
        self.latency = latency
        self.tokens_per_second = tokens_per_second
        self.rpm = rpm
        self.getmodels_only = getmodels_only
        self.natural_end = natural_end  # False: texts run to max_tokens (long streams for benchmarks)
        self.max_body = max_body
        self.log = log
        self._faults = FaultQueue()
        self._window = RateWindow()
        # Bounded so a long-running `pienteger-nb serve` does not grow without end.
        self._records: deque[ReceivedRequest] = deque(maxlen=max_records)
        self._received = 0  # ever recorded, for wait_for_requests
        self._cleared = 0  # _received at the last reset()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every recorded request
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"<Emulator {state}>"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a daemon thread; connections are accepted once this returns."""
        if self._server is not None:
            return self
        self._stopping.clear()
        handler = type("Handler", (EmulatorHandler,), {"emulator": self})
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.port), handler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"pienteger-emulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop serving: releases stalls and pauses, closes open connections, waits for the threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        for worker in threading.enumerate():
            if worker is not threading.current_thread() and worker.name.startswith(
                    f"pienteger-emulator-conn:{self.port}:"):
                worker.join(max(deadline - time.monotonic(), 0.0))
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API root clients use as their base URL."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{ROOT}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- faults and records ----------------------------------------------------------------

    def queue_fault(self, kind: str | Fault, *, times: int = 1, **options: Any) -> Fault:
        """Make the next ``times`` requests to /completions fail the way ``kind`` says (see ``faults.KINDS``)."""
        fault = kind if isinstance(kind, Fault) else Fault(kind, dict(options), times)
        self._faults.put(fault)
        return fault

    @property
    def requests(self) -> list[ReceivedRequest]:
        """What the emulator received, oldest first (a copy; the key masked)."""
        with self._lock:
            return list(self._records)

    def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> bool:
        """True once ``count`` requests have been recorded since the last reset (False after ``timeout`` s).

        Recording happens before latency, stalls and faults, so a test can wait for a call to be
        inside the emulator without sleeping.
        """
        with self._arrived:
            return self._arrived.wait_for(lambda: self._received - self._cleared >= count, timeout)

    def reset(self) -> None:
        """Forget recorded requests, queued faults and the rate window."""
        with self._lock:
            self._records.clear()
            self._cleared = self._received
        self._faults.clear()
        self._window.clear()

    # -- called by the handler -------------------------------------------------------------

    def _record(self, handler: EmulatorHandler, path: str, query: str, raw: bytes, parsed: Any) -> None:
        record = ReceivedRequest(method=handler.command, path=path, headers=masked_headers(
            list(handler.headers.items())), body=parsed, query=query, raw_body=raw, time=time.time(),
            peer=f"{handler.client_address[0]}:{handler.client_address[1]}")
        with self._arrived:
            self._records.append(record)
            self._received += 1
            self._arrived.notify_all()

    def _track(self, conn: socket.socket) -> None:
        threading.current_thread().name = f"pienteger-emulator-conn:{self.port}:{id(conn)}"
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _log(self, method: str, path: str, status: int, started: float) -> None:
        if self.log is not None:
            self.log(f"{method} {path} {status} {(time.perf_counter() - started) * 1000:.1f} ms")
