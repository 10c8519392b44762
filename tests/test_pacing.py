"""RateLimiter on a virtual clock: what it asks to wait for, never wall time."""

from __future__ import annotations

import itertools
import threading

import pytest

from pienteger_nb.batch.pacing import Cancelled, RateLimiter


class VirtualClock:
    """A clock that only moves when someone sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.t += seconds


def limiter(clock: VirtualClock, **kw) -> tuple[RateLimiter, list]:
    trace: list = []
    return RateLimiter(clock=clock.now, sleep=clock.sleep, trace=trace, **kw), trace


def grants(trace: list) -> list[float]:
    return [event[1] for event in trace if event[0] == "grant"]


def test_without_limits_nothing_waits():
    clock = VirtualClock()
    lim, trace = limiter(clock)
    for _ in range(5):
        lim.acquire()
    assert clock.sleeps == []
    assert grants(trace) == [0.0] * 5
    assert lim.interval() == 0.0


def test_known_rpm_spaces_starts():
    clock = VirtualClock()
    lim, trace = limiter(clock, rpm=600)
    for _ in range(4):
        lim.acquire()
    assert grants(trace) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])


def test_429_with_retry_after_pauses_the_next_start():
    clock = VirtualClock()
    lim, trace = limiter(clock)
    lim.acquire()
    clock.t = 0.5
    lim.observe(429, 2.0, {})
    lim.acquire()
    assert ("pause", 0.5, 2.5) in trace
    assert grants(trace)[-1] == pytest.approx(2.5)
    assert clock.sleeps == pytest.approx([2.0])
    assert lim.rate_limited == 1


def test_429_without_retry_after_uses_default_pause_and_max_pause_caps():
    clock = VirtualClock()
    lim, _ = limiter(clock, default_pause=3.0, max_pause=10.0)
    lim.observe(429, None, {})
    assert lim.paused_until == pytest.approx(3.0)
    lim.observe(429, 500.0, {})
    assert lim.paused_until == pytest.approx(10.0)
    # A shorter Retry-After never shortens a pause already in force.
    lim.observe(429, 1.0, {})
    assert lim.paused_until == pytest.approx(10.0)


def test_a_429_pauses_every_worker_not_only_the_one_that_got_it():
    clock = VirtualClock()
    lim, trace = limiter(clock, rpm=6000, concurrency=8)
    lim.observe(429, 5.0, {})
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(timeout=10)
            for _ in range(5):
                lim.acquire()
        except BaseException as exc:  # noqa: BLE001  (surfaced by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads) and not errors
    times = grants(trace)
    assert len(times) == 40
    assert min(times) >= 5.0  # nobody started during the pause
    # ... and the known pace still holds between every two starts afterwards.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.01 - 1e-9


def test_low_remaining_requests_slows_to_the_sustainable_pace():
    clock = VirtualClock()
    lim, trace = limiter(clock, concurrency=2)
    lim.observe(200, None, {"requests": 99})  # capacity 100 a minute, plenty left
    lim.acquire()
    lim.acquire()
    assert clock.sleeps == []
    lim.observe(200, None, {"requests": 15})  # below 20%: space starts 60/100 s apart
    assert lim.interval() == pytest.approx(0.6)
    lim.acquire()
    lim.acquire()
    lim.acquire()
    assert grants(trace)[-2:] == pytest.approx([0.6, 1.2])
    lim.observe(200, None, {"requests": 90})  # the window refilled: full speed again
    assert lim.interval() == 0.0


def test_an_answer_overtaken_by_a_later_one_does_not_undo_a_low_count():
    # Two workers: the answer to request 15 (5 left) can arrive after the one to request 16 (4 left).
    lim = RateLimiter(concurrency=2)
    lim.observe(200, None, {"requests": 19})  # capacity 20 a minute
    lim.observe(200, None, {"requests": 4})  # low: one start every 3 s
    lim.observe(200, None, {"requests": 5})  # stale, not a refill
    assert lim.interval() == pytest.approx(3.0)
    lim.observe(200, None, {"requests": 18})  # the window refilled: full speed again
    assert lim.interval() == 0.0


def test_low_means_at_least_twice_the_requests_in_flight():
    lim = RateLimiter(concurrency=16)
    lim.observe(200, None, {"requests": 99})
    lim.observe(200, None, {"requests": 35})  # 35% left, above 2 x 16 in flight
    assert lim.interval() == 0.0
    lim.observe(200, None, {"requests": 30})  # 30% left, but 16 may already be on their way
    assert lim.interval() == pytest.approx(60 / 100)


def test_low_remaining_tokens_slows_by_tokens_per_request():
    lim = RateLimiter()
    lim.observe(200, None, {"tokens": 9999})  # capacity 10,000 tokens a minute
    for left in (9000, 8000, 7000, 6000, 5000, 4000, 3000, 2000, 1000):
        lim.observe(200, None, {"tokens": left - 1})
    # 1,000 tokens per request: 10 requests a minute fit, one every 6 s.
    assert lim.interval() == pytest.approx(6.0, rel=0.01)


def test_headers_that_are_not_numbers_are_ignored():
    lim = RateLimiter()
    lim.observe(200, None, {"requests": "soon", "tokens": None})
    assert lim.interval() == 0.0


def test_cancel_wakes_a_waiting_worker_and_reopen_restores():
    lim = RateLimiter()  # real waits: on an Event that cancel() sets
    lim.observe(429, 1000.0, {})
    raised: list[BaseException] = []

    def worker() -> None:
        try:
            lim.acquire()
        except Cancelled as exc:
            raised.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    lim.cancel()
    t.join(timeout=10)
    assert not t.is_alive()
    assert len(raised) == 1
    with pytest.raises(Cancelled):
        lim.sleep(0.0)
    lim.reopen()
    lim.sleep(0.0)
    assert not lim.cancelled


def test_bad_rpm_is_refused_clearly():
    with pytest.raises(ValueError, match="rpm must be a positive number"):
        RateLimiter(rpm=0)
