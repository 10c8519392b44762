"""The ledger room: every call as one row, kept in SQLite and read back as pandas DataFrames.

``UsageLog`` owns one ledger file (``store``): the schema and its migrations (``schema``),
the fast frame reader (``frame``), summaries, export and plots (``views``). ``usage()``,
``usage_summary()`` and ``record_call()`` work on the default ledger (``PIENTEGER_USAGE_DB``).

May import: the shared leaves, sqlite3 and pandas (pandas only inside the functions that
build frames, so importing the ledger is cheap). No HTTP, no IPython.
"""

from __future__ import annotations

# Not `prices`/`set_prices` here: the name `prices` would hide the submodule of that name.
from .prices import cost_usd
from .store import (
    LedgerReplay,
    UsageLog,
    UsageLogError,
    cache_stats,
    clear_cache,
    default_log,
    export,
    plot,
    record_call,
    summary_text,
    usage,
    usage_summary,
)

__all__ = [
    "LedgerReplay",
    "UsageLog",
    "UsageLogError",
    "cache_stats",
    "clear_cache",
    "cost_usd",
    "default_log",
    "export",
    "plot",
    "record_call",
    "summary_text",
    "usage",
    "usage_summary",
]
