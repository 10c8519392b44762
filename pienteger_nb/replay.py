"""The replay cache as the client sees it: the request's key, when a request may be replayed,
and where answers are looked up (a store the package points at the ledger).

It lives in a leaf, like ``recorder``, so the client can ask for a stored answer without
knowing the ledger, and the package can wire the ledger's store without importing the client.
Answers are stored by the recorder: a successful call's ``CallRecord`` carries ``cache_key``
and ``answer``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from .types import Completion

CacheSetting = Literal["auto"] | bool

# Not part of what is asked: a streamed call may replay a plain one and vice versa.
_NOT_IN_KEY = frozenset({"stream", "stream_options"})


class ReplayStore(Protocol):
    """Answers stored by request key."""

    def lookup(self, key: str) -> Completion | None:
        """The stored answer for ``key``, or None."""
        ...


_default: ReplayStore | None = None


def set_default_replay(store: ReplayStore | None) -> ReplayStore | None:
    """Where a Client looks up stored answers when it has no store of its own; returns the old one."""
    global _default
    previous, _default = _default, store
    return previous


def default_replay() -> ReplayStore | None:
    """The store in force (None: nothing is replayed)."""
    return _default


def parse_cache_setting(value: Any) -> CacheSetting:
    """``"auto"``, True or False from what a user may type: auto, on/off, true/false, yes/no, 1/0."""
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low == "auto":
        return "auto"
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be auto, on or off, got {value!r}")


def is_deterministic(body: Mapping[str, Any]) -> bool:
    """Whether the service should give the same answer again: temperature 0 or a seed."""
    return body.get("seed") is not None or body.get("temperature") == 0


def cache_key(base_url: str, body: Mapping[str, Any]) -> str:
    """A hash of the canonical request: the service's host and path, model, prompt and every
    parameter (sorted), ``stream`` left out. The host keeps its port: ``127.0.0.1:8000`` and
    ``127.0.0.1:9000`` are different services (two emulators, say)."""
    parts = urlsplit(base_url)
    request = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    canonical = json.dumps([parts.netloc.lower(), parts.path.rstrip("/"), request], sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False, default=str)
    import hashlib  # here, not at import: %load_ext stays light

    return hashlib.sha256(canonical.encode()).hexdigest()


def key_for(setting: CacheSetting, base_url: str, body: Mapping[str, Any]) -> str | None:
    """The request's key when ``setting`` lets it be replayed (and stored), else None."""
    if setting is False or (setting == "auto" and not is_deterministic(body)):
        return None
    return cache_key(base_url, body)


__all__ = [
    "CacheSetting",
    "ReplayStore",
    "cache_key",
    "default_replay",
    "is_deterministic",
    "key_for",
    "parse_cache_setting",
    "set_default_replay",
]
