"""RateLimiter: one pacer shared by a batch's workers, so a rate-limited service sees no storm.

The client calls ``acquire()`` before every attempt and ``observe(status_code, retry_after,
ratelimit)`` after every response (the ``pacer`` protocol). The limiter keeps three rules:

- a known limit (``rpm=``) spaces request starts ``60 / rpm`` seconds apart;
- a 429 pauses EVERY worker until its ``Retry-After`` has passed (``default_pause`` when the
  service gave none), not only the one that got it;
- ``x-ratelimit-remaining-requests`` / ``-tokens`` slow the pace before 429s come: while what
  remains is low, starts are spaced at the rate the service can sustain (its capacity per
  minute, learned from the largest "remaining" seen).

A worker that must wait reserves the next free start (its seat) and sleeps until exactly then,
so a paced request costs one wake-up however many workers wait. When a 429 or a slower pace
pushes the schedule back, the seats behind are re-spaced and only the workers whose seat moved
wake again; a faster pace (the window refilled) wakes the workers it brings forward. (An
injected ``sleep`` cannot be interrupted: its worker sees a moved start when the sleep ends.)

Time comes from an injectable ``clock`` and waits go through an injectable ``sleep``, so tests
assert on what the limiter asked for rather than on wall time. ``cancel()`` wakes every waiter.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

# Below this share of the learned capacity, "remaining" counts as low and the pace slows.
LOW_SHARE = 0.2
# The tokens-per-request estimate moves a little with every response; re-spacing the queue for
# each move would wake every waiting worker per response, the storm reservations exist to avoid.
# A pace within this share of the one the queue is spaced at leaves the queue alone (new seats
# still take the exact pace).
RESPACE_SHARE = 0.1
# A start this close to its time counts as due: a clock read just after a timed wait may fall
# a rounding error short, and one more sleep for that would double the wake-ups.
DUE_SLACK = 1e-6


class Cancelled(BaseException):
    """The batch was cancelled while this worker waited for its turn.

    A BaseException, like KeyboardInterrupt: ``except Exception`` handlers let it through, and
    the client records the call it interrupted as ``cancelled``, not as an error.
    """


class _Seat:
    """One waiting worker's reserved start, and what wakes it early (None with an injected sleep)."""

    __slots__ = ("due", "wake")

    def __init__(self, due: float, wake: threading.Condition | None):
        self.due = due
        self.wake = wake


class RateLimiter:
    """Paces request starts across threads (the client's ``pacer``): see the module docstring.

    ``concurrency`` is how many requests may be in flight at once; "remaining" below twice that
    also counts as low, since that many requests may already be on their way. ``trace``, when
    a list, receives ``("grant", t)`` and ``("pause", t, until)`` tuples (for tests). Counters:
    ``granted`` starts, ``rate_limited`` 429s seen, ``waits`` sleeps taken by workers, ``moved``
    seats re-spaced after they were reserved.
    """

    def __init__(
        self,
        *,
        rpm: float | None = None,
        concurrency: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
        default_pause: float = 1.0,
        max_pause: float = 120.0,
        trace: list[tuple[Any, ...]] | None = None,
    ):
        if rpm is not None and not rpm > 0:
            raise ValueError(f"rpm must be a positive number of requests per minute, got {rpm!r}")
        self.rpm = rpm
        self.concurrency = max(1, int(concurrency))
        self.default_pause = default_pause
        self.max_pause = max_pause
        self._clock = clock
        self._cancelled = threading.Event()
        # An injected sleep cannot be interrupted: seats then wait through it and look again.
        self._injected_sleep = sleep
        self._sleep: Callable[[float], Any] = sleep if sleep is not None else self._cancelled.wait
        self._lock = threading.Lock()
        self._paused_until = -math.inf
        # The schedule: seats in start order, the first start not yet reserved, and the latest
        # start granted (the first waiting seat is spaced from it).
        self._queue: deque[_Seat] = deque()
        self._next_free = -math.inf
        self._granted_slot = -math.inf
        self._spaced_at = 0.0  # the pace the waiting seats were spaced at
        self._trace = trace
        # What the service told us: the largest remaining seen (its capacity) and the latest.
        self._cap: dict[str, int] = {}
        self._remaining: dict[str, int] = {}
        self._seen_since_cap: dict[str, int] = {}
        self.granted = 0
        self.rate_limited = 0
        self.waits = 0
        self.moved = 0

    # -- the pacer protocol ---------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this worker may start a request; raises ``Cancelled`` after ``cancel()``."""
        with self._lock:
            if self._cancelled.is_set():
                raise Cancelled("the batch was cancelled")
            now = self._clock()
            gap = self.interval()
            slot = max(now, self._paused_until, self._next_free)
            self._next_free = slot + gap
            if slot <= now + DUE_SLACK:
                self._grant(now, slot)
                return
            if not self._queue:
                self._spaced_at = gap
            seat = _Seat(slot, None if self._injected_sleep else threading.Condition(self._lock))
            self._queue.append(seat)
            try:
                self._wait_for(seat, now)
            finally:
                self._leave(seat)

    def observe(
        self, status_code: int | None, retry_after: float | None, ratelimit: Mapping[str, Any]
    ) -> None:
        """Take in one response: a 429 pauses everyone; remaining-* headers tune the pace."""
        with self._lock:
            now = self._clock()
            paused = False
            if status_code == 429:
                self.rate_limited += 1
                pause = retry_after if retry_after is not None and retry_after >= 0 else self.default_pause
                until = now + min(pause, self.max_pause)
                if until > self._paused_until:
                    self._paused_until = until
                    paused = True
                    if self._trace is not None:
                        self._trace.append(("pause", now, until))
            for kind in ("requests", "tokens"):
                value = _as_int((ratelimit or {}).get(kind))
                if value is None:
                    continue
                last = self._remaining.get(kind)
                if kind == "requests" and last is not None and last < value <= last + self.concurrency:
                    # The answer to an earlier request, overtaken by a later one in flight at the
                    # same time: stale, not a refill of the window. Keep the lower count.
                    value = last
                self._remaining[kind] = value
                if value + 1 > self._cap.get(kind, 0):
                    self._cap[kind] = value + 1
                    self._seen_since_cap[kind] = 0
                else:
                    self._seen_since_cap[kind] = self._seen_since_cap.get(kind, 0) + 1
            self._reschedule(now, paused=paused)

    # -- the schedule (called with the lock held) -------------------------------------------

    def _wait_for(self, seat: _Seat, now: float) -> None:
        """Sleep until ``seat`` is due, again only if it moved meanwhile; then take the start."""
        while True:
            wait = seat.due - now
            self.waits += 1
            if seat.wake is not None:
                seat.wake.wait(wait)
            else:
                self._lock.release()
                try:
                    self._sleep(wait)
                finally:
                    self._lock.acquire()
            if self._cancelled.is_set():
                raise Cancelled("the batch was cancelled")
            now = self._clock()
            if seat.due <= now + DUE_SLACK:
                self._grant(now, seat.due)
                return

    def _grant(self, now: float, slot: float) -> None:
        self.granted += 1
        self._granted_slot = max(self._granted_slot, slot)
        if self._trace is not None:
            self._trace.append(("grant", now))

    def _leave(self, seat: _Seat) -> None:
        # Seats are granted in start order, so the one leaving is nearly always the first.
        if self._queue and self._queue[0] is seat:
            self._queue.popleft()
        else:
            self._queue.remove(seat)

    def _reschedule(self, now: float, *, paused: bool) -> None:
        """Re-space the waiting seats after a response changed the pause or the pace."""
        gap = self.interval()
        if not self._queue:
            self._spaced_at = gap
            return
        spaced = self._spaced_at
        if gap > spaced * (1 + RESPACE_SHARE) or gap < spaced * (1 - RESPACE_SHARE):
            self._respace(now, gap, pull=gap < spaced)
            self._spaced_at = gap
        elif paused:
            self._respace(now, spaced, pull=False, settle=True)

    def _respace(self, now: float, gap: float, *, pull: bool, settle: bool = False) -> None:
        """Give every waiting seat the start it would get now: after the pause, ``gap`` apart.

        Seats only move back unless ``pull``; a seat moved forward is woken, one moved back is
        not (its worker wakes at the old time, sees the new one and sleeps on: one wake either
        way). With ``settle`` (the pace is unchanged), the first seat that keeps its start ends
        the pass: the seats behind it are already spaced after it.
        """
        prev = self._granted_slot
        paused = self._paused_until > now
        for seat in self._queue:
            if seat.due <= now + DUE_SLACK and not paused:
                # Due already, its worker on its way to start: a new pace does not hold it back
                # (a pause does: nobody starts while it lasts).
                prev = max(prev, seat.due)
                continue
            due = max(now, self._paused_until, prev + gap)
            if due > seat.due + DUE_SLACK or (pull and due < seat.due - DUE_SLACK):
                if due < seat.due and seat.wake is not None:
                    seat.wake.notify()
                seat.due = due
                self.moved += 1
            elif settle:
                return
            prev = seat.due
        self._next_free = prev + gap

    # -- control and introspection ----------------------------------------------------------

    def cancel(self) -> None:
        """Wake every waiting worker; later ``acquire()`` and ``sleep()`` calls raise ``Cancelled``."""
        self._cancelled.set()
        with self._lock:
            for seat in self._queue:
                if seat.wake is not None:
                    seat.wake.notify()

    def reopen(self) -> None:
        """Undo ``cancel()`` so the limiter can pace another batch (pauses and pace are kept)."""
        self._cancelled.clear()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def sleep(self, seconds: float) -> None:
        """A sleep that ``cancel()`` interrupts (given to the client for its retry backoff)."""
        if self._cancelled.is_set():
            raise Cancelled("the batch was cancelled")
        if seconds > 0:
            self._sleep(seconds)
        if self._cancelled.is_set():
            raise Cancelled("the batch was cancelled")

    def interval(self) -> float:
        """Seconds between request starts right now (0 when nothing asks to slow down)."""
        gap = 60.0 / self.rpm if self.rpm else 0.0
        cap = self._cap.get("requests")
        left = self._remaining.get("requests")
        if cap and left is not None and self._is_low(left, cap):
            gap = max(gap, 60.0 / cap)
        tcap = self._cap.get("tokens")
        tleft = self._remaining.get("tokens")
        if tcap and tleft is not None and self._is_low(tleft, tcap, tokens=True):
            # Tokens per request, from how far "remaining" fell over the responses seen since
            # the largest value: the capacity lasts tcap / per_request requests a minute.
            used = max(tcap - 1 - tleft, 1)
            per_request = used / max(self._seen_since_cap.get("tokens", 0), 1)
            gap = max(gap, 60.0 * per_request / tcap)
        return gap

    @property
    def paused_until(self) -> float:
        """Clock time before which no worker starts (``-inf`` when never paused)."""
        return self._paused_until

    def _is_low(self, left: int, cap: int, *, tokens: bool = False) -> bool:
        floor = cap * LOW_SHARE
        if not tokens:
            floor = max(floor, 2 * self.concurrency)
        return left <= floor

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rpm={self.rpm}, interval={self.interval():.3f}s, granted={self.granted}, "
            f"rate_limited={self.rate_limited}, waiting={len(self._queue)})"
        )


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["Cancelled", "RateLimiter"]
