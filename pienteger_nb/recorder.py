"""Where a call is reported when its Client has no ``on_call`` of its own.

The package points this at the usage ledger when it is imported; the client reads it at each
call. It lives in a leaf so the client need not know the ledger, nor the package import the
client (and requests) to wire it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .types import CallRecord

Recorder = Callable[[CallRecord], Any]
_default: Recorder | None = None


def set_default_recorder(fn: Recorder | None) -> Recorder | None:
    """Where calls are reported when a Client has ``on_call=None``; returns the one it replaces."""
    global _default
    previous, _default = _default, fn
    return previous


def default_recorder() -> Recorder | None:
    """The recorder in force (None: calls are not recorded)."""
    return _default


__all__ = ["Recorder", "default_recorder", "set_default_recorder"]
