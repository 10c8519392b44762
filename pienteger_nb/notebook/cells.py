"""What the extension remembers about cells that raised: ``{Err[n]}`` and ``%pienteger explain``.

IPython keeps every cell's source (``In``) and result (``Out``) but not its error. A
``post_run_cell`` hook keeps the last error text of each failed cell here, bounded in count
and in length, with the API key masked, so a prompt can quote it and ``explain`` can send it.
"""

from __future__ import annotations

import collections
import os
import threading
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .failures import scrub

# A notebook session can raise thousands of errors; only the recent ones are worth quoting.
MAX_CELLS = 100
# Enough for the frames that matter; a runaway traceback would swamp the prompt (and the bill).
MAX_CHARS = 4000
# The innermost frames say where it broke; outer ones are IPython's own.
TRACEBACK_FRAMES = 6
# Cells that ask about an error are not themselves the error to ask about.
_SELF = ("%pienteger explain", "%pienteger  explain")


@dataclass(frozen=True)
class FailedCell:
    """One cell that raised: its number, its source, and its error text (traceback tail + message)."""

    execution_count: int
    source: str
    error: str


def _ipython_frame(filename: str) -> bool:
    # IPython's exec() frame comes first in every cell's traceback; it says nothing about the error.
    return f"{os.sep}IPython{os.sep}" in filename


def error_text(exc: BaseException) -> str:
    """The error as a user reads it: the last frames and the message, key masked, bounded."""
    render = getattr(exc, "_render_traceback_", None)
    if callable(render):  # our one-line CellFailure, or another library's own rendering
        try:
            text = "\n".join(str(line) for line in render())
        except Exception:  # noqa: BLE001  a broken renderer must not lose the error
            text = "".join(traceback.format_exception_only(type(exc), exc))
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _ipython_frame(f.filename)]
        frames = frames[-TRACEBACK_FRAMES:]
        lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
        text = "".join(lines + traceback.format_exception_only(type(exc), exc))
    text = scrub(text.rstrip("\n"))
    # Keep the end: the message is the part that matters most.
    return text if len(text) <= MAX_CHARS else "…" + text[-(MAX_CHARS - 1) :]


class CellErrors(Mapping[int, str]):
    """``Err``: cell number -> the error text of that cell (only cells that raised; the last
    ``MAX_CELLS``). ``last()`` is the most recent failed cell with its source."""

    def __init__(self, max_cells: int = MAX_CELLS):
        self._cells: collections.OrderedDict[int, FailedCell] = collections.OrderedDict()
        self._max = max_cells
        self._lock = threading.Lock()

    def __getitem__(self, key: int) -> str:
        return self._cells[key].error

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._cells))

    def __len__(self) -> int:
        return len(self._cells)

    def __repr__(self) -> str:
        return f"<Err: errors of cells {list(self._cells)}>"

    def add(self, execution_count: int, source: str, exc: BaseException) -> None:
        entry = FailedCell(execution_count, scrub(source)[-MAX_CHARS:], error_text(exc))
        with self._lock:
            self._cells.pop(execution_count, None)
            self._cells[execution_count] = entry
            while len(self._cells) > self._max:
                self._cells.popitem(last=False)

    def last(self) -> FailedCell | None:
        with self._lock:
            return next(reversed(self._cells.values()), None)

    def after_cell(self, result: Any) -> None:
        """The ``post_run_cell`` hook: keep the error of a cell that raised."""
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if exc is None:
            return
        info = getattr(result, "info", None)
        source = str(getattr(info, "raw_cell", "") or "")
        count = getattr(result, "execution_count", None)
        if not isinstance(count, int) or source.lstrip().startswith(_SELF):
            return
        self.add(count, source, exc)


__all__ = ["MAX_CELLS", "MAX_CHARS", "CellErrors", "FailedCell", "error_text"]
