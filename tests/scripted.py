"""A loopback HTTP server that answers from a script, for answers the emulator will not give."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest


class ScriptedServer:
    """A loopback HTTP server that answers each connection with the next of ``answers`` (bytes,
    sent whole, then the connection closed) and keeps every request it read."""

    def __init__(self, answers: list[bytes]):
        self.answers = list(answers)
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/oaiv1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for answer in self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed before every answer was asked for
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.received.append(head + b"\r\n\r\n" + body)
                conn.sendall(answer)

    def close(self) -> None:
        """Stop (answers not asked for by now never will be) and join."""
        try:  # wakes an accept() blocked in the server thread (close() alone does not, on Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)


@pytest.fixture(name="scripted")
def scripted_fixture() -> Iterator[Callable[[list[bytes]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(answers: list[bytes]) -> ScriptedServer:
        servers.append(ScriptedServer(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def http(status: str, body: bytes, *, ctype: str = "application/json", headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode() + body


__all__ = ["ScriptedServer", "http", "scripted_fixture"]
