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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
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
    from .prices import cost_usd
    from .store import UsageLog, UsageLogError

# Public name -> its module, imported at first use: a light import of one ledger module (the
# prices, say) does not open the store. Not `prices`/`set_prices` here: the name `prices`
# would hide the submodule of that name.
_WHERE = {
    "LedgerReplay": "default", "cache_stats": "default", "clear_cache": "default",
    "default_log": "default", "export": "default", "plot": "default", "record_call": "default",
    "summary_text": "default", "usage": "default", "usage_summary": "default",
    "cost_usd": "prices", "UsageLog": "store", "UsageLogError": "store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


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
