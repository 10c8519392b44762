"""The client room: the Pienteger completions API over HTTP.

``Client`` (complete, stream, models, estimate) on its request loop (``request_loop``) and its
replay/budget gate (``gate``); ``Stream`` and the pieces they are made of: the SSE decoder
(``sse``), parameter checks (``params``), estimates (``estimate``), retries and pacing hooks
(``retry``), the mapping of HTTP failures to our errors (``httperrors``), capped body reads
(``body``), key masking (``redact``), replays (``replayed``) and the typed results
(``results``, ``choices``).

May import: the shared leaves (``errors``, ``types``, ``config``, ``recorder``, ``replay``,
``spend``) and requests. Never IPython, ipywidgets, pandas, sqlite3 or the ledger: each call is
reported as a ``CallRecord`` to ``on_call`` (or the default recorder), and stored answers and
budgets are asked through the ``replay`` and ``spend`` protocols, so the ledger can answer
without the client knowing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client
    from .stream import Stream


def __getattr__(name: str) -> Any:
    # Client (and requests with it) loads at first use: the magics import this room's light
    # modules (token counts) at %load_ext without paying for requests.
    if name == "Client":
        from .client import Client

        return Client
    if name == "Stream":
        from .stream import Stream

        return Stream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Client", "Stream"]
