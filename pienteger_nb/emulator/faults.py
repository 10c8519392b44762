"""Faults on demand: what they are, how the header spells them, and the queue tests fill.

A fault is a kind plus options. Per request: ``X-Emulator-Fault: status;status=503;body=html``
(several faults separated by ``,``). From Python: ``emulator.queue_fault("cut", after=3, times=2)``
makes the next two requests to /completions break after three events.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .wire import APIError

KINDS: dict[str, str] = {
    "status": "answer with status=N (200-599, default 500); body=json|html|empty; code=..., message=..., "
              "retry_after=seconds, retry_after_ms=N",
    "drop": "close the connection without an answer",
    "cut": "after=N events, write half of the next event and close the connection",
    "stall": "after=N events (plain calls: before the answer) wait until stop() (or seconds=S)",
    "malformed": "after=N events, a data line that is not JSON (plain calls: a truncated JSON body)",
    "error_event": "after=N events, an {\"error\": {...}} event, then the stream ends",
    "no_done": "the stream ends without data: [DONE]",
    "crlf": "SSE lines end with CRLF",
    "cr": "SSE lines end with CR",
    "keepalive": "':' comment lines before every event",
    "fields": "event:/id:/retry: lines, and each payload split over several data: lines",
}


_NUMERIC = ("status", "after", "seconds", "retry_after_ms")  # retry_after may also be an HTTP date


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` (see ``KINDS``), its options, and how many requests it applies to."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.times < 1:
            raise ValueError(f"times must be >= 1, got {self.times}")
        for name in _NUMERIC:
            if name in self.options:
                self.number(name, 0)
        if self.kind == "status" and not 200 <= self.number("status", 500) <= 599:
            raise ValueError(f"fault option status must be an HTTP status from 200 to 599, got "
                             f"{self.options['status']!r}")

    def number(self, name: str, default: float) -> float:
        value = self.options.get(name, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"fault option {name} must be a number, got {value!r}") from None

    def count(self, name: str, default: int) -> int:
        return int(self.number(name, default))


def _value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _specs(value: str) -> list[str]:
    """The header split into one spec per fault: a comma starts a new one only before a fault's
    name, so an option may hold commas (``retry_after=Wed, 21 Oct 2015 07:28:00 GMT``)."""
    specs: list[str] = []
    for piece in value.split(","):
        if specs and piece.split(";")[0].strip() not in KINDS:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


def parse_header(value: str) -> list[Fault]:
    """The faults an ``X-Emulator-Fault`` header asks for; a bad spelling is a 400 naming it."""
    faults = []
    for spec in _specs(value):
        parts = [p.strip() for p in spec.split(";") if p.strip()]
        if not parts:
            continue
        options: dict[str, Any] = {}
        for part in parts[1:]:
            name, sep, text = part.partition("=")
            if not sep:
                raise APIError(400, f"X-Emulator-Fault option {part!r} must look like name=value",
                               param="X-Emulator-Fault")
            options[name.strip()] = _value(text.strip())
        try:
            faults.append(Fault(parts[0], options))
        except ValueError as exc:
            raise APIError(400, f"X-Emulator-Fault: {exc}", param="X-Emulator-Fault") from None
    return faults


class FaultQueue:
    """Faults queued from Python, first in first out; each serves ``times`` requests. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[list[Any]] = deque()  # [fault, remaining]

    def put(self, fault: Fault) -> None:
        with self._lock:
            self._items.append([fault, fault.times])

    def take(self) -> Fault | None:
        """The fault for the next request, or None."""
        with self._lock:
            if not self._items:
                return None
            item = self._items[0]
            item[1] -= 1
            if item[1] <= 0:
                self._items.popleft()
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(remaining for _, remaining in self._items)


class StreamPlan:
    """How the faults of one request shape its stream: line ends, extra lines, where it breaks."""

    def __init__(self, faults: list[Fault], *, events: int) -> None:
        self.line_end = b"\n"
        self.keepalive = False
        self.fields = False
        self.done = True
        # event index -> fault; an index past the end means "after the last event".
        self.breaks: dict[str, tuple[int, Fault]] = {}
        for fault in faults:
            if fault.kind == "crlf":
                self.line_end = b"\r\n"
            elif fault.kind == "cr":
                self.line_end = b"\r"
            elif fault.kind == "keepalive":
                self.keepalive = True
            elif fault.kind == "fields":
                self.fields = True
            elif fault.kind == "no_done":
                self.done = False
            elif fault.kind in ("cut", "stall", "malformed", "error_event"):
                self.breaks[fault.kind] = (min(max(fault.count("after", 0), 0), events), fault)

    def at(self, kind: str, index: int) -> Fault | None:
        """The ``kind`` fault that fires before event ``index``, if any."""
        spot = self.breaks.get(kind)
        return spot[1] if spot is not None and spot[0] == index else None

    def event(self, payload: bytes, index: int) -> bytes:
        """One SSE event carrying ``payload`` (a JSON document or ``[DONE]``)."""
        end = self.line_end
        if self.fields:
            import json

            lines = [b"event: completion", b"id: %d" % index, b"retry: 3000"]
            if payload.startswith(b"{"):
                # Indented JSON has newlines only between tokens: each line becomes a data: line,
                # and a reader joining them with "\n" gets a valid document back.
                pretty = json.dumps(json.loads(payload), indent=1, ensure_ascii=False).encode()
                lines.extend(b"data: " + line for line in pretty.split(b"\n"))
            else:
                lines.append(b"data: " + payload)
            return end.join(lines) + end + end
        return b"data: " + payload + end + end

    def comment(self) -> bytes:
        return b": keep-alive" + self.line_end + self.line_end
