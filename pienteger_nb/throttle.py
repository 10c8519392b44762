"""Pacing of on-screen updates: the streaming view, the form and the batch progress bar share it."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Decides when a streaming view may send an update: at most one per ``interval``.

    The first update goes out at once; later ones wait for the interval to pass. The caller
    always sends the final state itself (``flush``), so the last text always lands.
    """

    def __init__(self, interval: float = 0.05, *, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self.sent = 0

    def ready(self) -> bool:
        """True when an update may be sent now; counts it as sent."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        self.sent += 1
        return True


__all__ = ["Throttle"]
