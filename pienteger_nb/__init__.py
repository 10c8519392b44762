"""pienteger_nb: the Pienteger completions API in Jupyter and IPython.

``%load_ext pienteger_nb`` registers ``%%pienteger`` and ``%pienteger``. ``Client`` is the
plain-Python way in; ``usage()`` returns the ledger of every call as a DataFrame.
Importing this package is cheap: pandas, ipywidgets and IPython load only when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PientegerError,
    RateLimitError,
    StreamError,
)
from .recorder import set_default_recorder
from .replay import set_default_replay
from .spend import SpendPolicy, set_default_spend
from .types import CallRecord, Choice, Chunk, Completion, Estimate, Model, Usage

if TYPE_CHECKING:  # pragma: no cover
    from .batch import compare, complete_many
    from .client import Client, Stream
    from .ledger import clear_cache, usage, usage_summary
    from .ledger.budget import set_budget
    from .ledger.prices import prices, set_prices
    from .notebook.form import PromptForm

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CallRecord",
    "Choice",
    "Chunk",
    "Client",
    "Completion",
    "ConfigurationError",
    "Estimate",
    "InternalServerError",
    "Model",
    "NotFoundError",
    "PermissionDeniedError",
    "PientegerError",
    "PromptForm",
    "RateLimitError",
    "Stream",
    "StreamError",
    "Usage",
    "clear_cache",
    "compare",
    "complete_many",
    "load_ipython_extension",
    "prices",
    "set_budget",
    "set_prices",
    "unload_ipython_extension",
    "usage",
    "usage_summary",
]

# Lazily imported public names (module, attribute): the client loads requests, the ledger
# sqlite3 (and pandas when read), the batch room pandas, the form ipywidgets.
_LAZY = {
    "Client": ("client", "Client"),
    "Stream": ("client", "Stream"),
    "PromptForm": ("notebook.form", "PromptForm"),
    "usage": ("ledger", "usage"),
    "usage_summary": ("ledger", "usage_summary"),
    "complete_many": ("batch", "complete_many"),
    "prices": ("ledger.prices", "prices"),
    "set_prices": ("ledger.prices", "set_prices"),
    "set_budget": ("ledger.budget", "set_budget"),
    "clear_cache": ("ledger", "clear_cache"),
    "compare": ("batch", "compare"),
}


def _record_to_ledger(record: CallRecord) -> None:
    # Imported at the first call, not at package import: keeps `import pienteger_nb` cheap.
    from .kernel import running_cell
    from .ledger import record_call

    if record.execution_count is None:  # a plain Client call made in a notebook cell: say which
        cell = running_cell()
        if cell is not None:
            record = dataclasses.replace(record, execution_count=cell)
    record_call(record)


class _LedgerReplay:
    """Stored answers come from the default ledger's replay cache (imported at the first look)."""

    def lookup(self, key: str) -> Completion | None:
        from .ledger.default import LedgerReplay

        return LedgerReplay().lookup(key)


# Every call from any Client lands in the default usage ledger unless it says otherwise, and
# its answer, when it may be replayed, in the ledger's replay cache.
set_default_recorder(_record_to_ledger)
set_default_replay(_LedgerReplay())


def _ledger_spend() -> SpendPolicy:
    # Made at a Client's first call: keeps `import pienteger_nb` cheap.
    from .ledger.budget import LedgerSpend

    return LedgerSpend()


# Prices, the characters-per-token ratio and budgets come from the default ledger.
set_default_spend(_ledger_spend)


class _WhenPandasLoads(importlib.abc.MetaPathFinder):
    """Registers ``df.pienteger`` right after pandas is imported, whatever the import order.

    The accessor lives in ``pienteger_nb.batch``, which needs pandas; importing pandas here would
    make ``import pienteger_nb`` slow. One shot: it leaves ``sys.meta_path`` at its first look.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "pandas":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("pandas")  # what the other finders make of it
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        load_pandas = loader.exec_module

        def exec_module(module: Any) -> None:
            load_pandas(module)
            try:
                from . import batch  # noqa: F401
            except Exception as exc:  # noqa: BLE001 - the user's pandas import must never fail for us
                warnings.warn(f"pienteger_nb: df.pienteger is not available ({exc})", stacklevel=2)

        loader.exec_module = exec_module
        return spec


def _register_accessor() -> None:
    if "pandas" in sys.modules:
        from . import batch  # noqa: F401
    elif not any(isinstance(f, _WhenPandasLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _WhenPandasLoads())


_register_accessor()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pienteger_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pienteger_nb``: register the magics."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
