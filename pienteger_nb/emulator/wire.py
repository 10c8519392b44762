"""The bytes the emulator writes: status lines, headers, JSON error bodies and chunked framing."""

from __future__ import annotations

import json
import secrets
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

SERVER = "pienteger-emulator"
_DONE = b"data: [DONE]\n\n"


class Closed(Exception):
    """The connection is gone (the client left, a fault closed it, or the emulator is stopping)."""


class APIError(Exception):
    """An answer with an error status: raised anywhere while handling a request, written by the handler."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.close = close  # the connection cannot be reused (e.g. an unread request body)

    def body(self) -> bytes:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> bytes:
    """The service's JSON error document."""
    return dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON. Never fails on a lone surrogate: requests carrying one are refused
    before anything echoes them, but should one slip through it goes out as a ``\\ud800`` escape
    rather than as a 500 (or, mid-stream, a broken body)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode()


def printable(text: str, limit: int = 200) -> str:
    """``text`` fit for a log line or an error message: unprintable characters (control codes,
    escape sequences, lone surrogates) written as Python escapes, and cut to ``limit`` characters."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[:limit])
    return shown + "..." if len(text) > limit else shown


def request_id() -> str:
    return "req_" + secrets.token_hex(12)


def completion_id() -> str:
    return "cmpl-" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")[:24]


def head(status: int, headers: dict[str, str], *, length: int | None, chunked: bool = True) -> bytes:
    """Status line and headers; without a ``length``, chunked transfer (or, for HTTP/1.0, until close)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}", f"Date: {formatdate(usegmt=True)}", f"Server: {SERVER}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if length is not None:
        lines.append(f"Content-Length: {length}")
    elif chunked:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    """A whole response in one buffer: written with one send so Nagle never delays it."""
    return head(status, headers, length=len(body)) + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never empty: the empty chunk ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


END_CHUNKS = b"0\r\n\r\n"
DONE_EVENT = _DONE

HTML_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def html_error(status: int) -> bytes:
    """The HTML page a proxy in front of the service answers with."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return HTML_ERROR.format(status=status, reason=reason).encode()
