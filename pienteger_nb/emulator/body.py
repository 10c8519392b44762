"""Reading a request body within ``max_body``: a plain Content-Length, or strictly framed chunks.

Strict because a lenient reader is a hole: ``int(b"-5", 16)`` is -5, and ``read(-5)`` reads to
EOF, past any limit. Every size is checked before a byte of its data is read, and the framing
around the data (size lines, extensions, trailers) has its own small budget, so no request makes
the emulator read much more than ``max_body``.
"""

from __future__ import annotations

import re
from email.message import Message
from io import BufferedIOBase

from .wire import APIError, Closed

DRAIN_LIMIT = 64 << 20  # an over-long Content-Length body up to this is read and dropped: the connection survives the 413
LINE_MAX = 1024  # one chunk-size line (size and extensions) or one trailer line
FRAMING_MAX = 64 << 10  # all size lines, extensions and trailers of one body together
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,18}")


def _malformed(why: str) -> APIError:
    # The rest of the connection's bytes cannot be trusted to start a request: close it.
    return APIError(400, f"Malformed chunked request body: {why}.", close=True)


def _too_large(limit: int, *, close: bool, length: int | None = None) -> APIError:
    size = "" if length is None else f"of {length} bytes "
    return APIError(413, f"Request body {size}is over the limit of {limit} bytes; send a shorter prompt.",
                    code="request_too_large", close=close)


def read_body(rfile: BufferedIOBase, headers: Message, limit: int) -> bytes:
    """The request's body. APIError for a bad or too large one; ``Closed`` when the client left."""
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding", []) for c in v.split(",")]
    if codings:
        if codings[-1] != "chunked":
            raise APIError(400, f"Transfer-Encoding {', '.join(codings)[:100]} is not supported: send "
                           "Content-Length or chunked.", close=True)
        return _read_chunked(rfile, limit)
    length = _content_length(headers)
    if length > limit:
        if length > DRAIN_LIMIT:
            raise _too_large(limit, close=True, length=length)
        left = length
        while left > 0:
            got = rfile.read(min(left, 1 << 16))
            if not got:
                raise Closed
            left -= len(got)
        raise _too_large(limit, close=False, length=length)
    return rfile.read(length) if length else b""


def _content_length(headers: Message) -> int:
    values = {v.strip() for v in headers.get_all("Content-Length", [])}
    if not values:
        return 0
    # int() alone would take "+5", "1_0" and " 5 "; two different lengths are a smuggling attempt.
    if len(values) > 1 or not _DIGITS.fullmatch(next(iter(values))):
        raise APIError(400, "Content-Length must be one whole number of bytes (digits only).", close=True)
    return int(next(iter(values)))


def _line(rfile: BufferedIOBase, what: str) -> bytes:
    line = rfile.readline(LINE_MAX + 1)
    if line.endswith(b"\n"):
        return line
    if len(line) > LINE_MAX:
        raise _malformed(f"a {what} line is over {LINE_MAX} bytes")
    raise _malformed("the body ended before its last chunk")


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    framing = 0
    while True:
        line = _line(rfile, "chunk size")
        framing += len(line)
        text = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not _HEX.fullmatch(text):
            raise _malformed(f"chunk size {text[:40]!r} is not a hexadecimal number")
        length = int(text, 16)
        if length == 0:
            break
        if size + length > limit:  # refused before its data is read
            raise _too_large(limit, close=True)
        data = rfile.read(length)
        if len(data) < length:
            raise _malformed("the body ended inside a chunk")
        parts.append(data)
        size += length
        end = rfile.readline(3)
        if end not in (b"\r\n", b"\n"):
            raise _malformed("a chunk's data must end with CRLF")
        framing += len(end)
        if framing > FRAMING_MAX:
            raise _malformed(f"over {FRAMING_MAX} bytes of chunk sizes and extensions; send larger chunks")
    while True:  # trailers, read and dropped
        line = _line(rfile, "trailer")
        framing += len(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)
        if framing > FRAMING_MAX:
            raise _malformed(f"over {FRAMING_MAX} bytes of chunk sizes, extensions and trailers")
