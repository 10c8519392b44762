"""``Emulator``: the local Pienteger server in a background thread, its knobs and its records."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from .connections import Connections, default_max_connections
from .faults import Fault, FaultQueue
from .handler import ROOT, EmulatorHandler
from .records import RateWindow, ReceivedRequest, masked_headers

DEFAULT_KEY = "emulator-key"
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request
DEFAULT_MAX_THREADS = 128  # requests served at once; idle connections need no thread


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # a restart may reuse the port at once (TIME_WAIT); on Windows this would share it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)  # a burst of connects waits in the kernel, not in SYN retries
    except BaseException:
        sock.close()
        raise
    return sock


class Emulator:
    """A Pienteger-compatible server on loopback, for tests, demos and offline work.

    ``with Emulator(api_key="k") as emu:`` serves at ``emu.url`` until the block ends. ``latency``,
    ``tokens_per_second``, ``rpm``, ``getmodels_only`` and ``natural_end`` may be changed while it
    runs. ``emu.requests`` lists what it received; ``queue_fault`` breaks the next /completions calls.

    Connections (read at ``start()``): a kept-alive connection idle for ``idle_timeout`` seconds is
    closed; at most ``max_threads`` requests are served at once, and idle connections hold no
    thread; past ``max_connections`` open ones (default: half the file-descriptor limit, at most
    4,096) the longest-idle is closed to make room.
    """

    def __init__(self, api_key: str = DEFAULT_KEY, *, host: str = "127.0.0.1", port: int = 0,
                 latency: float = 0.0, tokens_per_second: float | None = None, rpm: int | None = None,
                 getmodels_only: bool = False, natural_end: bool = True, max_body: int = 1 << 20,
                 max_records: int = 10_000, log: Callable[[str], None] | None = None,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, max_connections: int | None = None,
                 max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty: clients must send some key")
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int | float) or not (
                0 < idle_timeout <= threading.TIMEOUT_MAX and math.isfinite(idle_timeout)):
            raise ValueError(f"idle_timeout must be a number of seconds > 0, got {idle_timeout!r}")
        for name, value in (("max_threads", max_threads), ("max_connections", max_connections)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
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
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections if max_connections is not None else default_max_connections()
        self.max_threads = max_threads
        self._faults = FaultQueue()
        self._window = RateWindow()
        # Bounded so a long-running `pienteger-nb serve` does not grow without end.
        self._records: deque[ReceivedRequest] = deque(maxlen=max_records)
        self._received = 0  # ever recorded, for wait_for_requests
        self._cleared = 0  # _received at the last reset()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every recorded request
        self._stopping = threading.Event()
        self._connections: Connections | None = None

    def __repr__(self) -> str:
        state = self.url if self._connections is not None else "stopped"
        return f"<Emulator {state}>"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in daemon threads; connections are accepted once this returns."""
        if self._connections is not None:
            return self
        self._stopping.clear()
        listener = _listen(self.host, self.port)
        self.port = listener.getsockname()[1]
        timeout = self.idle_timeout

        def open_session(sock: socket.socket, address: Any) -> EmulatorHandler:
            return EmulatorHandler(sock, address, self, timeout=timeout)

        self._connections = Connections(listener, open_session, idle_timeout=timeout,
                                        max_connections=self.max_connections, max_threads=self.max_threads,
                                        name=f"pienteger-emulator:{self.port}")
        self._connections.start()
        return self

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop serving: releases stalls and pauses, closes open connections, waits for the threads."""
        connections = self._connections
        if connections is None:
            return
        self._stopping.set()
        connections.close(timeout)
        self._connections = None

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
        return self._connections is not None

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

    def _record(self, *, method: str, path: str, query: str, headers: list[tuple[str, str]], raw: bytes,
                parsed: Any, peer: str) -> None:
        record = ReceivedRequest(method=method, path=path, headers=masked_headers(headers), body=parsed,
                                 query=query, raw_body=raw, time=time.time(), peer=peer)
        with self._arrived:
            self._records.append(record)
            self._received += 1
            self._arrived.notify_all()

    def _log(self, method: str, path: str, status: int, started: float) -> None:
        if self.log is not None:
            self.log(f"{method} {path} {status} {(time.perf_counter() - started) * 1000:.1f} ms")
