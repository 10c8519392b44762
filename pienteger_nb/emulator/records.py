"""What the emulator received, kept for tests to assert on the wire, and its rate window."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_SECRET_HEADERS = ("x-api-key", "authorization", "api-key")


class Headers(dict[str, str]):
    """Request headers as sent (names keep their case); lookups ignore case."""

    def _find(self, name: str) -> str | None:
        lowered = name.lower()
        for key in self:
            if key.lower() == lowered:
                return key
        return None

    def __getitem__(self, name: str) -> str:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        key = self._find(name)
        if key is None:
            raise KeyError(name)
        return dict.__getitem__(self, key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (dict.__contains__(self, name) or self._find(name) is not None)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            return default


def mask(value: str) -> str:
    """A secret shown as ``****`` and its last four characters."""
    if value.lower().startswith("bearer "):
        return value[:7] + mask(value[7:])
    return "****" + value[-4:] if len(value) > 4 else "****"


def masked_headers(items: list[tuple[str, str]]) -> Headers:
    return Headers((name, mask(value) if name.lower() in _SECRET_HEADERS else value) for name, value in items)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the emulator got it: ``body`` is the parsed JSON, or None when it was not JSON."""

    method: str
    path: str
    headers: Headers
    body: Any
    query: str = ""
    peer: str = ""  # "host:port" of the client's socket: equal peers mean one kept-alive connection
    raw_body: bytes = field(default=b"", repr=False)
    time: float = 0.0  # time.time() when it arrived


class RateWindow:
    """Requests and tokens over the last minute; refuses requests past ``rpm``. Thread-safe."""

    NOMINAL_RPM = 3500  # what the headers count down from when no limit is set
    NOMINAL_TPM = 90000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0  # sum of the tokens in _events, kept so headers cost O(1)

    def _purge(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - 60.0:
            self._tokens -= self._events.popleft()[1]

    def admit(self, *, rpm: int | None, tokens: int) -> tuple[float | None, dict[str, str]]:
        """(None, headers) when admitted; (seconds to wait, headers) when over the limit."""
        now = time.monotonic()
        with self._lock:
            self._purge(now)
            wait: float | None = None
            if rpm is not None and len(self._events) >= rpm:
                oldest = self._events[-rpm][0] if rpm > 0 else now
                wait = max(oldest + 60.0 - now, 0.001)
            else:
                self._events.append((now, tokens))
                self._tokens += tokens
            return wait, self._headers(rpm)

    def headers(self, *, rpm: int | None) -> dict[str, str]:
        """The x-ratelimit-* headers now, without counting a request."""
        with self._lock:
            self._purge(time.monotonic())
            return self._headers(rpm)

    def _headers(self, rpm: int | None) -> dict[str, str]:
        limit = rpm if rpm is not None else self.NOMINAL_RPM
        return {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(max(limit - len(self._events), 0)),
            "x-ratelimit-limit-tokens": str(self.NOMINAL_TPM),
            "x-ratelimit-remaining-tokens": str(max(self.NOMINAL_TPM - self._tokens, 0)),
        }

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._tokens = 0


def retry_after_seconds(wait: float) -> str:
    """Retry-After in whole seconds, never 0 (a client would retry at once and fail again)."""
    return str(max(1, math.ceil(wait)))
