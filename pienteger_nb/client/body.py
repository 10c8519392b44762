"""Reading a whole (non-streamed) body with a cap on its size and an optional deadline.

No real answer comes near the caps; a service or proxy that sends more is refused with a clear
``APIConnectionError`` naming the limit, and memory stays bounded while refusing (the body is
read in pieces and the connection closed, never loaded whole first).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from ..errors import APIConnectionError, APITimeoutError

MAX_ANSWER_BYTES = 64 << 20  # a whole answer (decoded): far past any completion's size
MAX_ERROR_BYTES = 1 << 20  # an error body: past that only the first MiB is read
_PIECE = 1 << 16


def describe_size(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size:,} bytes"


def _declared(resp: requests.Response) -> int | None:
    raw = resp.headers.get("content-length")
    try:
        return int(raw) if raw is not None and not resp.headers.get("content-encoding") else None
    except ValueError:
        return None


def read_answer(
    resp: requests.Response,
    *,
    limit: int | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The body, or APIConnectionError when it passes ``limit`` (``MAX_ANSWER_BYTES``) or
    APITimeoutError when ``deadline`` (on ``clock``) passes while reading. Closes ``resp``.

    requests exceptions while reading propagate for the caller's one mapping boundary."""
    cap = MAX_ANSWER_BYTES if limit is None else limit
    try:
        declared = _declared(resp)
        if declared is not None and declared > cap:
            raise _too_large(cap)
        pieces: list[bytes] = []
        size = 0
        for piece in resp.iter_content(_PIECE):
            size += len(piece)
            if size > cap:
                raise _too_large(cap)
            pieces.append(piece)
            if deadline is not None and clock() > deadline:
                raise APITimeoutError("the call passed its deadline while the answer was being read",
                                      advice="try again or raise Client(deadline=...)")
        return b"".join(pieces)
    finally:
        resp.close()


def read_error_body(resp: requests.Response, *, limit: int | None = None) -> bytes:
    """At most ``limit`` (``MAX_ERROR_BYTES``) bytes of an error body; b"" when it cannot be read."""
    cap = MAX_ERROR_BYTES if limit is None else limit
    pieces: list[bytes] = []
    size = 0
    try:
        for piece in resp.iter_content(_PIECE):
            pieces.append(piece[: cap - size])
            size += len(piece)
            if size >= cap:
                break
    except requests.RequestException:
        pass
    finally:
        resp.close()
    return b"".join(pieces)


def _too_large(cap: int) -> APIConnectionError:
    return APIConnectionError(
        f"the service's answer is larger than {describe_size(cap)}, more than any completion; refused "
        "without reading it all",
        advice="check PIENTEGER_BASE_URL (it should be the Pienteger API root)",
    )


__all__ = ["MAX_ANSWER_BYTES", "MAX_ERROR_BYTES", "describe_size", "read_answer", "read_error_body"]
