"""Progress of a batch: an ipywidgets bar in a notebook, a ``\\r`` line on stderr in a terminal.

``make_progress(True, total)`` picks the widget when running in a Jupyter kernel and the text
line otherwise; ``False`` gives a display that shows nothing. Every display has
``update(done, errors)`` (throttled: call it as often as you like) and ``close()`` (shows the
final counts). ``add_cost(usd)`` counts what each answered row cost (None: unpriced) and the
label shows the sum so far: ``37/100 · 2 errors · $0.0123 · 3 cached · 12.5/s · ETA 5s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..kernel import in_kernel
from ..ledger.prices import format_usd
from ..throttle import Throttle


def describe(
    done: int, total: int, errors: int, elapsed: float, *, finished: bool = False, spent: str = ""
) -> str:
    """The one-line summary: counts, errors, what was spent (as given), rate and ETA (or total
    time when finished)."""
    parts = [f"{done}/{total}"]
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if spent:
        parts.append(spent)
    rate = done / elapsed if elapsed > 0 else 0.0
    if done:
        parts.append(f"{rate:.1f}/s")
    if finished:
        parts.append(f"in {_duration(elapsed)}")
    elif done and rate > 0:
        parts.append(f"ETA {_duration((total - done) / rate)}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Shows nothing; the base of the visible displays (counts and timing live here)."""

    def __init__(
        self,
        total: int,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total
        self.done = 0
        self.errors = 0
        self.cost = 0.0  # USD of the priced rows answered so far
        self.priced = 0
        self.unpriced = 0  # answered rows whose model has no price: their cost is unknown, not 0
        self.cached = 0
        self._clock = clock
        self._started = clock()
        self._throttle = Throttle(interval, clock=clock)
        self.closed = False

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def add_cost(self, usd: float | None, *, cached: bool = False) -> None:
        """Count one answered row's cost (None: its model is unpriced; a replay costs 0)."""
        if usd is None:
            self.unpriced += 1
        else:
            self.cost += usd
            self.priced += 1
        self.cached += cached

    def spent(self) -> str:
        """``$0.0123``, ``unpriced``, ``$0.0123 + 2 unpriced``, with ``· 3 cached`` when rows were replayed."""
        if not self.priced and not self.unpriced:
            return ""
        if not self.priced:
            text = "unpriced"
        else:
            text = format_usd(self.cost) + (f" + {self.unpriced} unpriced" if self.unpriced else "")
        return text + (f" · {self.cached} cached" if self.cached else "")

    def text(self, *, finished: bool = False) -> str:
        return describe(self.done, self.total, self.errors, self.elapsed, finished=finished, spent=self.spent())

    def update(self, done: int, errors: int = 0) -> None:
        """Record the counts; redraw when the throttle allows."""
        self.done, self.errors = done, errors
        if self._throttle.ready():
            self._draw(finished=False)

    def close(self, *, note: str = "") -> None:
        """Draw the final state once (``note`` is appended, e.g. "interrupted")."""
        if self.closed:
            return
        self.closed = True
        self._draw(finished=True, note=note)

    def _draw(self, *, finished: bool, note: str = "") -> None:
        pass


class TextProgress(Progress):
    """One line on ``stream`` (stderr), rewritten in place with ``\\r``; a newline when closed."""

    def __init__(self, total: int, *, stream: TextIO | None = None, interval: float = 0.5, **kw: Any):
        super().__init__(total, interval=interval, **kw)
        self._stream = stream if stream is not None else sys.stderr
        self._width = 0

    def _draw(self, *, finished: bool, note: str = "") -> None:
        line = "batch " + self.text(finished=finished) + (f" · {note}" if note else "")
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        try:
            self._stream.write("\r" + line + pad + ("\n" if finished else ""))
            self._stream.flush()
        except (OSError, ValueError):  # a closed stream must not break the batch
            pass


class WidgetProgress(Progress):
    """An ``IntProgress`` bar and a ``Label`` in an ``HBox``, displayed when made."""

    def __init__(self, total: int, *, display: bool = True, interval: float = 0.1, **kw: Any):
        super().__init__(total, interval=interval, **kw)
        import ipywidgets as widgets

        self.bar = widgets.IntProgress(value=0, min=0, max=max(total, 1), description="batch")
        self.label = widgets.Label(value=self.text())
        self.box = widgets.HBox([self.bar, self.label])
        if display:
            from IPython.display import display as _display

            _display(self.box)

    def _draw(self, *, finished: bool, note: str = "") -> None:
        self.bar.value = self.done
        if finished:
            failed = self.errors or note
            self.bar.bar_style = "warning" if failed else "success"
        self.label.value = self.text(finished=finished) + (f" · {note}" if note else "")


def make_progress(progress: bool | str, total: int, **kw: Any) -> Progress:
    """The display for ``progress=``: True picks widget or text; "widget"/"text"; False shows nothing."""
    if progress is False or progress is None:
        return Progress(total, **kw)
    if progress is True or progress == "auto":
        progress = "widget" if in_kernel() else "text"
    if progress == "widget":
        try:
            return WidgetProgress(total, **kw)
        except ImportError:
            return TextProgress(total, **kw)
    if progress == "text":
        return TextProgress(total, **kw)
    raise ValueError(f"progress must be True, False, 'widget' or 'text', got {progress!r}")


__all__ = ["Progress", "TextProgress", "WidgetProgress", "describe", "make_progress"]
