"""The workers of a batch: threads that share one client and one ``RateLimiter``, each row's
call, and the waiting thread that gathers finished rows, stops on a fatal error, a long 429 or
the budget, and shuts down cleanly on an interrupt.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    BudgetExceededError,
    NotFoundError,
    PermissionDeniedError,
    PientegerError,
    RateLimitError,
)
from ..kernel import running_cell
from .frame import a_type, failed_row, is_na, ok_row
from .pacing import Cancelled, RateLimiter

if TYPE_CHECKING:  # pragma: no cover
    from ..client.client import Client
    from ..types import CallRecord, Completion

log = logging.getLogger("pienteger_nb")

# How long an interrupted batch waits for its workers to notice; they end within one
# response's latency because in-flight streams are closed under them.
JOIN_TIMEOUT = 5.0
_POLL = 0.2
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_GATHER = 0.02  # seconds the waiting thread lets finished rows pile up between looks
# Errors every row would get (wrong key, unknown model, quota used up): the first one stops the
# batch and raises.
FATAL = (AuthenticationError, PermissionDeniedError, NotFoundError)


class _Fatal(Exception):
    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _is_fatal(exc: BaseException, fatal: tuple[type[BaseException], ...] = FATAL) -> bool:
    if isinstance(exc, fatal):
        return True
    return isinstance(exc, RateLimitError) and exc.code == "insufficient_quota"


class BatchInterruptedWarning(UserWarning):
    """A batch was interrupted; the message says how to resume it."""


class _Stop(Exception):
    """The service asked for a wait past the client's ``max_retry_wait``: the batch stops at once
    (its row failed with the 429) instead of pausing every worker; ``resume=`` continues later."""

    def __init__(self, row: dict[str, Any], error: RateLimitError, cap: float):
        super().__init__(str(error))
        self.row, self.error, self.cap = row, error, cap

    def line(self, ok: int, total: int) -> str:
        from ..client.retry import describe_wait

        asked = describe_wait(self.error.retry_after or 0.0)
        return (
            f"batch stopped: the service asked to wait {asked} (HTTP 429), more than max_retry_wait="
            f"{self.cap:g} s; {ok} of {total} rows ok. Resume later with complete_many(prompts, resume=df) "
            "(or df.pienteger.complete(..., resume=True)) to do only the rows that are not ok."
        )


class _CappedPacer:
    """The shared limiter, except that a 429 asking for longer than the client will wait does not
    pause the other workers (the batch stops instead, see ``_Stop``)."""

    def __init__(self, limiter: RateLimiter, cap: float):
        self.limiter, self.cap = limiter, cap

    def acquire(self) -> None:
        self.limiter.acquire()

    def observe(self, status_code: int | None, retry_after: float | None, ratelimit: dict[str, int]) -> None:
        if status_code == 429 and retry_after is not None and retry_after > self.cap:
            status_code, retry_after = None, None
        self.limiter.observe(status_code, retry_after, ratelimit)


def in_this_cell(client: Client) -> Any:
    """The client's recorder, stamping each row with the running cell's number when there is one.

    Worker threads make the calls, so the recorder cannot look the cell up itself.
    """
    recorder = client._recorder()
    cell = running_cell()
    if recorder is None or cell is None:
        return client.on_call

    def record(rec: CallRecord) -> None:
        recorder(dataclasses.replace(rec, execution_count=cell) if rec.execution_count is None else rec)

    return record


def caller_level() -> int:
    """``stacklevel`` for a warning raised where this is called: the first frame outside the package.

    complete_many is reached directly or through the accessor, so no fixed level names the
    user's line (a wrong one names IPython's, and hides the warning's place in the cell).
    """
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level


def streams(params: dict[str, Any]) -> bool:
    # Rows stream so an interrupt can close an in-flight request at once; best_of cannot stream.
    return (params.get("best_of") or 1) <= 1


class Run:
    """One batch run: the worker threads, their shared limiter, and the main thread's wait."""

    def __init__(
        self,
        client: Client,
        items: list[Any],
        todo: list[int],
        rows: list[dict[str, Any] | None],
        *,
        model: str | None,
        params: dict[str, Any],
        concurrency: int,
        limiter: RateLimiter,
        source: str = "batch",
        item_params: list[dict[str, Any]] | None = None,
        fatal: tuple[type[BaseException], ...] = FATAL,
    ):
        # item_params: per-row parameters over ``params`` (compare runs one prompt with many
        # models and settings); fatal: the errors that stop the whole run.
        self.limiter = limiter
        self.item_params = item_params
        self.fatal = fatal
        self.client = client.with_options(
            source=source, pacer=_CappedPacer(limiter, client.max_retry_wait), sleep=limiter.sleep,
            on_call=in_this_cell(client),
        )
        self.items, self.rows, self.model, self.params = items, rows, model, params
        self.stream = streams(params)
        self.todo: collections.deque[int] = collections.deque(todo)
        self.results: queue.Queue[tuple[int, dict[str, Any], BaseException | None]] = queue.Queue()
        self.stop = threading.Event()
        self.budget_stop: str | None = None  # why rows not started yet are skipped
        self.open_streams: set[Any] = set()
        self.lock = threading.Lock()
        n = min(concurrency, len(todo))
        self.threads = [
            threading.Thread(target=self._work, name=f"pienteger-batch-{i}", daemon=True) for i in range(n)
        ]

    def execute(self, display: Any, *, on_row: Callable[..., Any] | None, done_before: int) -> None:
        """Run to the end or to an interrupt; fills ``rows`` (unfinished rows stay None)."""
        expected = len(self.todo)
        done, errors, interrupted = done_before, 0, False
        fatal: BaseException | None = None
        stopped: _Stop | None = None
        received = 0
        try:
            for thread in self.threads:
                thread.start()
            display.update(done, errors)
            while received < expected and fatal is None and stopped is None:
                try:
                    arrived = [self.results.get(timeout=_POLL)]
                except queue.Empty:
                    if not any(t.is_alive() for t in self.threads) and self.results.empty():
                        break  # every worker has ended: nothing more will come
                    continue
                while True:
                    try:
                        arrived.append(self.results.get_nowait())
                    except queue.Empty:
                        break
                # Store every finished row before calling hooks, so an interrupt raised by one
                # loses none of the others.
                for pos, row, exc in arrived:
                    if isinstance(exc, _Stop):
                        self.rows[pos] = row
                        stopped = stopped or exc
                    elif exc is not None:
                        fatal = exc
                    else:
                        self.rows[pos] = row
                for pos, row, exc in arrived:
                    if exc is not None and not isinstance(exc, _Stop):
                        break
                    received += 1
                    done += 1
                    errors += row["status"] != "ok"
                    if row["status"] == "ok":
                        display.add_cost(row.get("cost"), cached=bool(row.get("cached")))
                    display.update(done, errors)
                    if on_row is not None:
                        on_row(pos, dict(row))
                if received < expected and fatal is None and stopped is None:
                    time.sleep(_GATHER)  # let rows gather: fewer wake-ups taking the GIL from workers
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stuck = self._shutdown(early=received < expected)
            # Rows that finished while we stopped count as finished.
            while True:
                try:
                    pos, row, exc = self.results.get_nowait()
                except queue.Empty:
                    break
                if self.rows[pos] is None and exc is None:
                    self.rows[pos] = row
                    if row["status"] == "ok":
                        display.add_cost(row.get("cost"), cached=bool(row.get("cached")))
            statuses = collections.Counter(r["status"] for r in self.rows if r is not None)
            ok = statuses["ok"]
            display.update(ok + statuses["error"], statuses["error"])
            display.close(note="interrupted" if interrupted else ("stopped" if fatal or stopped else ""))
        if fatal is not None:
            raise fatal
        if stopped is not None and not interrupted:
            warnings.warn(stopped.line(ok, len(self.rows)), BatchInterruptedWarning, stacklevel=caller_level())
        elif self.budget_stop is not None and not interrupted:
            skipped = sum(1 for r in self.rows if r is not None and r["status"] == "skipped")
            warnings.warn(
                f"batch stopped by the budget: {skipped} of {len(self.rows)} rows skipped. Resume with "
                "complete_many(prompts, resume=df) once the budget allows (set_budget to raise it).",
                BatchInterruptedWarning,
                stacklevel=caller_level(),
            )
        if interrupted:
            left = len(self.rows) - ok
            extra = f"; {stuck} worker threads were still finishing a request" if stuck else ""
            warnings.warn(
                f"batch interrupted: {ok} of {len(self.rows)} rows ok, {left} not done{extra}. "
                "Resume with complete_many(prompts, resume=df) (or df.pienteger.complete(..., resume=True)) "
                "to do only the rows that are not ok.",
                BatchInterruptedWarning,
                stacklevel=caller_level(),
            )

    def _shutdown(self, *, early: bool) -> int:
        """Stop queued work, close in-flight streams, join every worker; returns how many linger."""
        self.stop.set()
        self.todo.clear()
        busy = early and any(t.is_alive() for t in self.threads)
        if busy:  # wake workers waiting for their turn or sleeping before a retry
            self.limiter.cancel()
        with self.lock:
            streams = list(self.open_streams)
        for s in streams:
            try:
                s.close()
            except Exception as exc:  # noqa: BLE001  (best effort: the worker sees the stop flag anyway)
                log.debug("closing a stream on interrupt failed: %s", exc)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in self.threads:
            if thread.ident is not None:  # an interrupt may come before every thread started
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if busy:
            self.limiter.reopen()  # a limiter shared with later batches keeps working
        return sum(t.is_alive() for t in self.threads)

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                pos = self.todo.popleft()
            except IndexError:
                return
            if self.budget_stop is not None:  # the budget ran out: later rows are skipped, not sent
                self.results.put((pos, failed_row("skipped", self.budget_stop), None))
                continue
            try:
                row = self._one(self.items[pos], self.item_params[pos] if self.item_params else {})
            except _Fatal as fatal:
                self.results.put((pos, {}, fatal.error))
                return
            except _Stop as stop:
                self.results.put((pos, stop.row, stop))
                return
            except Exception as exc:  # noqa: BLE001  (anything unforeseen fails this row, never the batch)
                row = failed_row("error", f"{type(exc).__name__}: {exc}")
            except BaseException:  # noqa: BLE001  (Cancelled outside a call, or the interpreter leaving)
                self.results.put((pos, failed_row("cancelled", "cancelled"), None))
                return
            self.results.put((pos, row, None))

    def _one(self, prompt: Any, extra: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(prompt, str):
            what = "missing" if prompt is None or is_na(prompt) else a_type(prompt)
            return failed_row("error", f"ValueError: the prompt is {what}, not a string")
        start = time.perf_counter()
        try:
            completion = self._call(prompt, extra)
        except Cancelled:
            return failed_row("cancelled", "cancelled", latency=time.perf_counter() - start)
        except BudgetExceededError as exc:
            self.budget_stop = f"{type(exc).__name__}: {exc}"
            return failed_row("skipped", self.budget_stop)
        except (PientegerError, ValueError, TypeError) as exc:
            if _is_fatal(exc, self.fatal):
                raise _Fatal(exc) from exc
            row = failed_row(
                "error",
                f"{type(exc).__name__}: {exc}",
                latency=time.perf_counter() - start,
                request_id=getattr(exc, "request_id", None),
            )
            cap = self.client.max_retry_wait
            if isinstance(exc, RateLimitError) and exc.retry_after is not None and exc.retry_after > cap:
                raise _Stop(row, exc, cap) from None
            return row
        if completion is None:
            return failed_row("cancelled", "cancelled", latency=time.perf_counter() - start)
        return ok_row(completion)

    def _call(self, prompt: str, extra: dict[str, Any]) -> Completion | None:
        params = {"model": self.model, **self.params, **extra}
        if not self.stream:
            return self.client.complete(prompt, **params)
        with self.client.stream(prompt, **params) as s:
            with self.lock:
                self.open_streams.add(s)
            try:
                if self.stop.is_set():
                    s.close()
                for _ in s:
                    if self.stop.is_set():
                        s.close()
                        break
            finally:
                with self.lock:
                    self.open_streams.discard(s)
        return s.completion


__all__ = ["FATAL", "BatchInterruptedWarning", "Run", "caller_level", "in_this_cell", "streams"]
