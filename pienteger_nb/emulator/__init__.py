"""A local Pienteger-compatible server: ``Emulator`` for tests and demos, ``pienteger-nb serve``.

Standard library only, and no code shared with the client: it writes the wire format itself, so
tests against it are a real cross-check. See ``faults.KINDS`` for the faults it can act out.
"""

from __future__ import annotations

from .cli import add_serve_arguments, run_serve
from .faults import KINDS as FAULT_KINDS
from .faults import Fault
from .generate import count_tokens
from .records import ReceivedRequest
from .server import DEFAULT_KEY, Emulator

__all__ = [
    "DEFAULT_KEY",
    "FAULT_KINDS",
    "Emulator",
    "Fault",
    "ReceivedRequest",
    "add_serve_arguments",
    "count_tokens",
    "run_serve",
]
