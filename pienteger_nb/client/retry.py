"""When to retry a request and how long to wait first.

Retried (before the first byte of a successful body only): connection errors and timeouts,
408, 409, 429 (except ``insufficient_quota``) and 5xx. The wait is what the service asked
for (``retry-after-ms``, else ``Retry-After`` in seconds or as an HTTP date) when it said,
else exponential backoff with full jitter (base 0.5 s, doubling, capped at 8 s).
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

RETRY_STATUSES = frozenset({408, 409, 429})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0


class Pacer(Protocol):
    """Shared pacing across calls (batches): ``acquire`` before every attempt, ``observe`` after."""

    def acquire(self) -> None: ...

    def observe(
        self, status_code: int | None, retry_after: float | None, ratelimit: dict[str, int]
    ) -> None: ...


def is_retryable_status(status: int, code: str | None = None) -> bool:
    """True for statuses worth another try; a used-up quota is not (waiting will not help)."""
    if code == "insufficient_quota":
        return False
    return status in RETRY_STATUSES or status >= 500


def retry_after(headers: Mapping[str, str], *, now: Callable[[], _dt.datetime] | None = None) -> float | None:
    """Seconds the service asked us to wait (``retry-after-ms`` first, then ``Retry-After``), or None."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            ms = float(raw_ms)
            if ms >= 0:
                return ms / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
        return seconds if seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    current = now() if now else _dt.datetime.now(_dt.UTC)
    return max(0.0, (when - current).total_seconds())


def backoff(attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """Full-jitter backoff before retry number ``attempt`` (1 for the first retry)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** (attempt - 1)))
    return ceiling * rand()


def ratelimit_from(headers: Mapping[str, str]) -> dict[str, int]:
    """{"requests": n, "tokens": n} from x-ratelimit-remaining-* headers (only those present)."""
    out: dict[str, int] = {}
    for name in ("requests", "tokens"):
        raw = headers.get(f"x-ratelimit-remaining-{name}")
        if raw is not None:
            try:
                out[name] = int(float(raw))
            except ValueError:
                pass
    return out


def describe_wait(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def _noop(*_: Any) -> None:
    return None


__all__ = ["RETRY_STATUSES", "Pacer", "backoff", "is_retryable_status", "ratelimit_from", "retry_after"]
