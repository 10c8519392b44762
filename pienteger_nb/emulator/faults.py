"""Faults on demand: what they are, how the header spells them, and the queue tests fill.

A fault is a kind plus options. Per request: ``X-Emulator-Fault: status;status=503;body=html``
(several faults separated by ``,``). From Python: ``emulator.queue_fault("cut", after=3, times=2)``
makes the next two requests to /completions break after three events.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
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


# The options each kind acts on. An option no kind knows is refused: a typo (``afterr=3``)
# silently ignored would make a test pass for the wrong reason. A known option on a kind that
# ignores it (``no_done;after=4``) is checked but harmless, so callers may pass one set to any kind.
OPTIONS: dict[str, tuple[str, ...]] = {
    "status": ("status", "body", "code", "message", "type", "retry_after", "retry_after_ms"),
    "drop": (),
    "cut": ("after",),
    "stall": ("after", "seconds"),
    "malformed": ("after",),
    "error_event": ("after", "message", "type", "code"),
    "no_done": (), "crlf": (), "cr": (), "keepalive": (), "fields": (),
}
_KNOWN = frozenset({name for names in OPTIONS.values() for name in names})
MAX_AFTER = 10**9  # past the end of any stream already means "before [DONE]"
MAX_SECONDS = 86_400.0  # a day; a longer stall is "until stop()": leave seconds out
_BODIES = ("json", "html", "empty")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(name: str, value: Any, low: int, high: int) -> None:
    # NaN and infinities are not integers (is_integer() is False), so they land here too.
    if not _is_number(value) or (isinstance(value, float) and not value.is_integer()) or not low <= value <= high:
        raise ValueError(f"fault option {name} must be a whole number from {low} to {high}, got {_shown(value)}")


def _seconds(name: str, value: Any, high: float) -> None:
    # Written so NaN fails (every comparison with it is False) and a huge int never becomes a float.
    if not (_is_number(value) and 0 <= value <= high):
        raise ValueError(f"fault option {name} must be a number from 0 to {high:g}, got {_shown(value)}")


def _retry_after(value: Any) -> None:
    """Seconds, or an HTTP date; it becomes a response header, so nothing else may pass."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                raise ValueError("fault option retry_after must be seconds or an HTTP date, got "
                                 f"{_shown(value)}") from None
            if value.isprintable():
                return
            raise ValueError(f"fault option retry_after must be one line, got {_shown(value)}") from None
    _seconds("retry_after", value, MAX_SECONDS)


def check_options(kind: str, options: dict[str, Any]) -> None:
    """ValueError naming the first option that is unknown or whose value is out of range."""
    for name, value in options.items():
        if name not in _KNOWN:
            takes = f"{kind} takes {', '.join(OPTIONS[kind])}" if OPTIONS[kind] else f"{kind} takes none"
            raise ValueError(f"unknown fault option {_shown(name)[1:-1]} ({takes})")
        if name == "status":
            _whole(name, value, 200, 599)
        elif name == "after":
            _whole(name, value, 0, MAX_AFTER)
        elif name == "seconds":
            _seconds(name, value, MAX_SECONDS)
        elif name == "retry_after_ms":
            _seconds(name, value, MAX_SECONDS * 1000)
        elif name == "retry_after":
            _retry_after(value)
        elif name == "body" and value not in _BODIES:
            raise ValueError(f"fault option body must be one of {', '.join(_BODIES)}, got {_shown(value)}")
        elif not isinstance(value, str | int | float):  # code, message, type: text in the JSON body
            raise ValueError(f"fault option {name} must be text, got {_shown(value)}")


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` (see ``KINDS``), its options, and how many requests it applies to."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {_shown(self.kind)}; choose one of: {', '.join(KINDS)}")
        if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
            raise ValueError(f"times must be a whole number >= 1, got {_shown(self.times)}")
        check_options(self.kind, self.options)

    def number(self, name: str, default: float) -> float:
        """An option checked as a number (see ``check_options``), or ``default``."""
        return float(self.options.get(name, default))

    def count(self, name: str, default: int) -> int:
        """An option checked as a whole number, or ``default``."""
        return int(self.options.get(name, default))


def _value(text: str) -> Any:
    """A header option's value: an int or a finite float when it reads as one, else the text.

    ``inf``, ``nan`` and ``1e400`` stay text, so the check that refuses them quotes what was sent.
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


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
                raise APIError(400, f"X-Emulator-Fault option {_shown(part)} must look like name=value",
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
