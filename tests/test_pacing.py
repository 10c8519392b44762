"""RateLimiter on a virtual clock: what it asks to wait for, never wall time."""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable

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


class ManualTime:
    """A clock only the test moves; ``sleep`` blocks its thread until the clock reaches the end.

    Each ``sleep`` call is one wake-up of a worker (``wakes`` counts them per thread). ``run``
    moves the clock to the next wake-up whenever every worker sleeps or has ended, so the
    workers proceed in clock order with no wall-clock wait.
    """

    def __init__(self) -> None:
        self.t = 0.0
        self.wakes: collections.Counter[str] = collections.Counter()
        self._cond = threading.Condition()
        self._asleep: dict[int, float] = {}  # one entry per sleeping thread: the clock it waits for
        self._tokens = itertools.count()
        self._running = 0
        self._threads: list[threading.Thread] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._cond:
            token = next(self._tokens)
            self._asleep[token] = self.t + seconds
            self.wakes[threading.current_thread().name] += 1
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: token not in self._asleep, timeout=10):
                raise TimeoutError("the test never moved the clock to this sleep's end")

    def start(self, name: str, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

        with self._cond:
            self._running += 1
        thread = threading.Thread(target=body, name=name)
        self._threads.append(thread)
        thread.start()

    def settle(self) -> None:
        """Return once every worker sleeps or has ended."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._running == len(self._asleep), timeout=10)

    def advance_to(self, t: float) -> None:
        """Move the clock, waking the sleeps that end by then; call after ``settle``."""
        with self._cond:
            self.t = max(self.t, t)
            for token in [k for k, end in self._asleep.items() if end <= self.t]:
                del self._asleep[token]
            self._cond.notify_all()

    def run(self) -> None:
        """Move the clock from wake-up to wake-up until every worker has ended; join them."""
        while True:
            self.settle()
            with self._cond:
                if not self._running:
                    break
                nearest = min(self._asleep.values())
            self.advance_to(nearest)
        for thread in self._threads:
            thread.join(timeout=10)
        assert not any(t.is_alive() for t in self._threads)


def limiter(clock: VirtualClock | ManualTime, **kw) -> tuple[RateLimiter, list]:
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


# -- wake-ups: each waiting worker has its own start, so a paced start costs one wake-up ---------


def test_each_paced_start_costs_one_wake_up_however_many_wait():
    mt = ManualTime()
    lim, trace = limiter(mt, rpm=600, concurrency=50)
    for i in range(50):
        mt.start(f"w{i}", lambda: [lim.acquire() for _ in range(4)])
    mt.run()
    assert grants(trace) == pytest.approx([0.1 * k for k in range(200)])
    # Only the very first start was free; every other one slept exactly once (the limiter that
    # woke every waiter at each start slept about 50 times per start here).
    assert sum(mt.wakes.values()) == lim.waits == 199
    assert sorted(mt.wakes.values()) == [3] + [4] * 49 and lim.moved == 0


def waiting_line(mt: ManualTime, lim: RateLimiter, workers: int) -> None:
    """``workers`` workers each take one start: the first at 0, the rest wait for theirs."""
    for i in range(workers):
        mt.start(f"w{i}", lim.acquire)
    mt.settle()


def test_a_429_wakes_only_the_workers_whose_start_moved():
    mt = ManualTime()
    lim, trace = limiter(mt, rpm=60, concurrency=5)
    waiting_line(mt, lim, 5)  # starts at 0, 1, 2, 3, 4
    mt.advance_to(1.0)
    mt.settle()  # the start at 1 went; three workers wait for 2, 3 and 4
    mt.advance_to(1.2)
    lim.observe(429, 0.5, {})  # the pause ends at 1.7, before the next start: nobody moves
    assert lim.moved == 0
    lim.observe(429, 1.5, {})  # until 2.7: the three waiting starts move back, still 1 s apart
    assert lim.moved == 3
    mt.run()
    assert grants(trace) == pytest.approx([0.0, 1.0, 2.7, 3.7, 4.7])
    # One wake-up for each start that waited, plus one for each start that moved.
    assert sum(mt.wakes.values()) == lim.waits == 4 + 3
    assert sorted(mt.wakes.values()) == [1, 2, 2, 2]


def test_a_pause_holds_back_a_start_that_came_due_but_has_not_begun():
    mt = ManualTime()
    lim, trace = limiter(mt, rpm=60, concurrency=2)
    waiting_line(mt, lim, 2)  # starts at 0 and 1
    mt.t = 1.0  # the second start is due; its worker has not woken yet
    lim.observe(429, 2.0, {})
    mt.run()
    assert grants(trace) == pytest.approx([0.0, 3.0])
    assert list(mt.wakes.values()) == [2] and lim.moved == 1


def test_a_slower_pace_moves_the_waiting_starts_once():
    mt = ManualTime()
    lim, trace = limiter(mt, rpm=600, concurrency=2)
    lim.observe(200, None, {"requests": 99})  # capacity 100 a minute, plenty left
    waiting_line(mt, lim, 4)  # starts at 0, 0.1, 0.2, 0.3
    mt.advance_to(0.05)
    lim.observe(200, None, {"requests": 3})  # low: one start every 0.6 s
    assert lim.moved == 3
    mt.run()
    assert grants(trace) == pytest.approx([0.0, 0.6, 1.2, 1.8])
    assert sum(mt.wakes.values()) == 3 + 3


def test_a_small_drift_in_the_token_pace_moves_nobody():
    mt = ManualTime()
    lim, trace = limiter(mt)
    lim.observe(200, None, {"tokens": 9999})  # capacity 10,000 tokens a minute
    for left in range(8999, 0, -1000):  # 1,000 tokens per request: one start every 6 s
        lim.observe(200, None, {"tokens": left})
    waiting_line(mt, lim, 3)
    mt.advance_to(1.0)
    lim.observe(200, None, {"tokens": 899})  # 910 tokens per request: 5.46 s, within 10%
    assert lim.interval() == pytest.approx(5.46, rel=0.01)
    mt.run()
    assert lim.moved == 0 and sum(mt.wakes.values()) == 2
    assert grants(trace) == pytest.approx([0.0, 6.0, 12.0], rel=0.01)


class ArrivalClock:
    """Clock 0 for everyone; ``arrived`` is set when a worker thread reads it (inside acquire)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()

    def __call__(self) -> float:
        if threading.current_thread() is not threading.main_thread():
            self.arrived.set()
        return 0.0


def test_a_faster_pace_wakes_a_waiting_worker_at_once():
    # Real waits: a worker reserves a start 30 s away; the window refills and the limiter wakes
    # it. The join would time out if only its 30 s wait ended it.
    clock = ArrivalClock()
    lim = RateLimiter(concurrency=1, clock=clock)
    lim.observe(200, None, {"requests": 1})  # capacity 2 a minute, and low: one start every 30 s
    lim.acquire()
    worker = threading.Thread(target=lim.acquire)
    worker.start()
    assert clock.arrived.wait(timeout=10)
    # observe() takes the lock only once the worker waits on its seat.
    lim.observe(200, None, {"requests": 1000})  # refilled (and a larger capacity): full speed
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert lim.granted == 2 and lim.moved == 1


def test_cancel_wakes_every_worker_waiting_on_its_own_start():
    clock = ArrivalClock()
    lim = RateLimiter(rpm=1, concurrency=3, clock=clock)  # one start a minute
    lim.acquire()
    raised: list[BaseException] = []

    def worker() -> None:
        try:
            lim.acquire()
        except Cancelled as exc:
            raised.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        clock.arrived.clear()
        t.start()
        assert clock.arrived.wait(timeout=10)
    lim.cancel()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert len(raised) == 3 and lim.granted == 1
    lim.reopen()
    assert "waiting=0" in repr(lim)
