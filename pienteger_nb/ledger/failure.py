"""The ledger's one error class, shared by the SQLite and the PostgreSQL ledger."""

from __future__ import annotations

from ..errors import PientegerError


class UsageLogError(PientegerError):
    """The usage ledger could not be opened or written."""


__all__ = ["UsageLogError"]
