"""pienteger_nb: the Pienteger completions API in Jupyter and IPython.

``%load_ext pienteger_nb`` registers ``%%pienteger`` and ``%pienteger``. ``Client`` is the
plain-Python way in; ``usage()`` returns the ledger of every call as a DataFrame.
Importing this package is cheap: pandas, ipywidgets and IPython load only when used.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import client as _client
from .client import Client, Stream
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PientegerError,
    RateLimitError,
    StreamError,
)
from .types import CallRecord, Choice, Chunk, Completion, Model, Usage

if TYPE_CHECKING:  # pragma: no cover
    from .widgets import PromptForm

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CallRecord",
    "Choice",
    "Chunk",
    "Client",
    "Completion",
    "ConfigurationError",
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
    "complete_many",
    "load_ipython_extension",
    "unload_ipython_extension",
    "usage",
    "usage_summary",
]

# Lazily imported public names: module, attribute.
_LAZY = {
    "PromptForm": ("widgets", "PromptForm"),
    "usage": ("ledger", "usage"),
    "usage_summary": ("ledger", "usage_summary"),
    "complete_many": ("batch", "complete_many"),
}


def _record_to_ledger(record: CallRecord) -> None:
    # Imported at the first call, not at package import: keeps `import pienteger_nb` cheap.
    from .ledger import record_call

    record_call(record)


# Every call from any Client lands in the default usage ledger unless it says otherwise.
_client.set_default_recorder(_record_to_ledger)


def _register_accessor() -> None:
    # df.pienteger / s.pienteger come with pienteger_nb.batch; import it only when pandas is
    # already loaded, so `import pienteger_nb` never pulls pandas in itself.
    if "pandas" in sys.modules:
        from . import batch  # noqa: F401


_register_accessor()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pienteger_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pienteger_nb``: register the magics."""
    from .magics import load_ipython_extension as _load

    _register_accessor()
    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
