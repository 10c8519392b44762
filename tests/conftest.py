"""Shared fixtures: an isolated environment per test and the emulator on loopback."""

from __future__ import annotations

import os

import pytest
from pg import pg_cluster, pg_url  # noqa: F401  (PostgreSQL fixtures for the team-ledger tests)

TEST_KEY = "pk-test-0123456789abcdefSECRET"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Clear PIENTEGER_* variables, point the ledger and XDG dirs at tmp_path, reset kernel settings."""
    for name in list(os.environ):
        if name.startswith("PIENTEGER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PIENTEGER_USAGE_DB", str(tmp_path / "usage.sqlite"))
    from pienteger_nb import config

    config.clear_kernel()
    _reset_spend()
    yield
    config.clear_kernel()
    _reset_spend()


def _reset_spend() -> None:
    """No prices and no budget set in this process (each test sets its own)."""
    from pienteger_nb.ledger import budget, prices

    prices.set_prices(None)
    budget._explicit = None
    budget._session.start()


@pytest.fixture(scope="module")
def ip():
    """The process's one InteractiveShell with the magics registered; they are closed after the module."""
    from IPython.core.interactiveshell import InteractiveShell

    from pienteger_nb.notebook.magics import PientegerMagics

    shell = InteractiveShell.instance()
    magics = PientegerMagics(shell)
    shell.register_magics(magics)
    yield shell
    magics.unload()  # also stops background jobs and removes its post_run_cell hook


# Names the magic tests put in the user namespace; cleared around each test.
MAGIC_NAMES = ("topic", "rows", "d", "x", "os", "res", "answer")


@pytest.fixture
def magics(ip):
    """The registered PientegerMagics, reset before and after each test: real clock, no client
    factory, no cached client or emulator, no background job, no leftover names."""
    import time

    m = ip.magics_manager.registry["PientegerMagics"]

    def reset() -> None:
        m.clock = time.monotonic
        m.client_factory = None
        m.close()
        if m._jobs is not None:
            m._jobs.close()
            m._jobs.jobs.clear()
        for name in MAGIC_NAMES:
            ip.user_ns.pop(name, None)

    reset()
    yield m
    reset()


@pytest.fixture
def emulator():
    """A fresh emulator on 127.0.0.1, port 0, key TEST_KEY; stopped (stalls released) after the test."""
    from pienteger_nb.emulator import Emulator

    with Emulator(api_key=TEST_KEY) as emu:
        yield emu


@pytest.fixture
def raw_server():
    """Start a loopback server for answers the emulator will not give (odd shapes, bodies held open).

    ``url = raw_server(answer, connections=1)``: for each connection it reads the request, then
    sends ``answer`` (bytes) or calls ``answer(conn)``. Returns the API root URL; teardown joins.
    """
    import socket
    import threading

    started = []

    def read_request(conn: socket.socket) -> None:
        # The whole request, body included: closing with unread bytes would reset the connection
        # and could lose the answer before the client reads it.
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        while lengths and len(body) < int(lengths[0]):
            piece = conn.recv(65536)
            if not piece:
                return
            body += piece

    def start(answer, *, connections: int = 1) -> str:
        listener = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            for _ in range(connections):
                conn, _ = listener.accept()
                with conn:
                    read_request(conn)
                    if isinstance(answer, bytes):
                        conn.sendall(answer)
                    else:
                        answer(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.append((listener, thread))
        return f"http://127.0.0.1:{listener.getsockname()[1]}/oaiv1"

    yield start
    for listener, thread in started:
        thread.join(10)
        listener.close()


@pytest.fixture
def env_emulator(emulator, monkeypatch):
    """The emulator, with PIENTEGER_API_KEY and PIENTEGER_BASE_URL pointing at it."""
    monkeypatch.setenv("PIENTEGER_API_KEY", emulator.api_key)
    monkeypatch.setenv("PIENTEGER_BASE_URL", emulator.url)
    return emulator
