"""The calls the default ledger could not record, counted until recording works again.

A ledger that cannot be written (a full disk, a file made read-only) must not fail the calls
themselves, and one warning per session is all a user sees of it: the count keeps the rest
visible in ``%pienteger usage`` and ``usage().attrs``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class UnrecordedCalls:
    """Calls not recorded since recording last worked: how many, since when (UTC), the last reason."""

    count: int = 0
    since: dt.datetime | None = None
    reason: str = ""

    def __str__(self) -> str:
        if not self.count:
            return "every call has been recorded"
        calls = "1 call" if self.count == 1 else f"{self.count} calls"
        when = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since is not None else ""
        return (f"{calls}{when} could not be recorded and are missing from the usage ledger: {self.reason}. "
                "The count clears when a call is recorded again.")


class UnrecordedTally:
    """A thread-safe count of failures to record, reset by the next success."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = UnrecordedCalls()

    def failed(self, reason: str) -> int:
        """Count one failure; returns the count, 1 for the first since recording last worked."""
        with self._lock:
            old = self._state
            since = old.since if old.count else dt.datetime.now(dt.UTC)
            self._state = UnrecordedCalls(old.count + 1, since, reason)
            return self._state.count

    def succeeded(self) -> None:
        if self._state.count:  # read without the lock: the usual case costs no lock at all
            with self._lock:
                self._state = UnrecordedCalls()

    def snapshot(self) -> UnrecordedCalls:
        return self._state


unrecorded_tally = UnrecordedTally()


def unrecorded_calls() -> UnrecordedCalls:
    """The calls ``record_call`` could not record since recording last worked (count 0: none)."""
    return unrecorded_tally.snapshot()


def with_unrecorded_attrs(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``attrs["unrecorded_calls"]`` (and the reason when not 0)."""
    missing = unrecorded_tally.snapshot()
    frame.attrs["unrecorded_calls"] = missing.count
    if missing.count:
        frame.attrs["unrecorded_reason"] = missing.reason
    return frame
