"""The client room: the Pienteger completions API over HTTP.

``Client`` (complete, stream, models, estimate), ``Stream`` and the pieces they are made of:
the SSE decoder (``sse``), parameter checks (``params``), retries and pacing hooks (``retry``),
the mapping of HTTP failures to our errors (``httperrors``), and the typed results (``results``,
``choices``).

May import: the shared leaves (``errors``, ``types``, ``config``, ``recorder``) and requests.
Never IPython, ipywidgets, pandas, sqlite3 or the ledger: each call is reported as a
``CallRecord`` to ``on_call`` (or the default recorder), so the ledger can listen without the
client knowing it.
"""

from __future__ import annotations

from .client import Client
from .stream import Stream

__all__ = ["Client", "Stream"]
