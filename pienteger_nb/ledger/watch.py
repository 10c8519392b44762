"""Rows a ledger wrote into a file deleted while it was open, kept to be written again.

A SQLite connection writes on into a file deleted under it (the folder removed, a clean-up
script): those rows would be lost without a word. A stat per row would cost a tenth of a row's
time, so the file is looked at once a ``FILE_CHECK_INTERVAL_S`` (and before every read); the rows
written since the last look are kept until the next one and, when the file has gone, written
again into a new file at the path.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from .schema import MEMORY

FILE_CHECK_INTERVAL_S = 1.0


class FileWatch:
    """Whether the ledger's file is still the one being written, and the rows at stake if not."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.unchecked: list[tuple[Any, ...]] = []  # written since the file was last seen in place
        self.lost: list[tuple[Any, ...]] = []  # written into a file now gone: to write again
        self.inode: int | None = None
        self.next_look = math.inf  # monotonic time; an in-memory ledger has no file to look at

    def opened(self) -> None:
        """The file now at the path is the one written from here on."""
        if self.path != MEMORY:
            self.inode = os.stat(self.path).st_ino
            self.next_look = time.monotonic() + FILE_CHECK_INTERVAL_S

    def forget(self) -> None:
        """Drop the kept rows (a child after fork(): they are the parent's to look after)."""
        self.unchecked, self.lost = [], []

    def due(self) -> bool:
        return bool(self.lost) or time.monotonic() >= self.next_look

    def replaced(self) -> bool:
        """Whether the file was deleted (or another put in its place) since it was opened."""
        if self.path == MEMORY:
            return False
        try:
            return os.stat(self.path).st_ino != self.inode
        except OSError:
            return True

    def looked(self, *, replaced: bool) -> None:
        """Note a look; ``replaced``: the file had gone and a new one is open (``opened()``)."""
        if replaced:
            self.lost = self.lost + self.unchecked
        self.unchecked = []
        self.next_look = time.monotonic() + FILE_CHECK_INTERVAL_S

    def written(self, rows: list[tuple[Any, ...]]) -> None:
        """``rows`` (the lost ones among them) are committed to the file now open."""
        self.unchecked.extend(rows)
        if self.lost:
            self.lost = []
