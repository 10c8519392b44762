"""The ledger room: every call as one row, read back as pandas DataFrames; prices, budgets and
the replay cache live beside the rows.

``UsageLog`` owns one SQLite file (``store``): the schema and its migrations (``schema``), the
fast frame reader (``frame``), summaries, export and plots (``views``), prices (``prices``),
budgets (``budget`` over ``spendbook``), the replay cache (``cache``). ``usage()``,
``usage_summary()`` and ``record_call()`` work on the default ledger (``default``), which
``PIENTEGER_USAGE_DB`` may also point at a team's PostgreSQL (``postgres`` and its ``pg*``
modules, ``spool``, ``backend``).

May import: the shared leaves, sqlite3, pandas (only inside the functions that build frames, so
importing the ledger is cheap) and psycopg (only for a team ledger). No HTTP, no IPython.
"""

from __future__ import annotations

from .default import (
    LedgerReplay,
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

# Not `prices`/`set_prices` here: the name `prices` would hide the submodule of that name.
from .prices import cost_usd
from .store import UsageLog, UsageLogError

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
