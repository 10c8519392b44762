"""Stream: a streamed completion, read as text deltas (or Chunks) and assembled by choice index.

The response is read with ``iter_content(chunk_size=None)`` into ``sse.SSEDecoder`` (never
``iter_lines``). How a stream ends:

- ``data: [DONE]``: ok; ``.completion`` holds the assembled Completion.
- ``close()`` (from any thread), leaving the ``with`` early, ``break`` + ``close``, or
  KeyboardInterrupt: recorded ``cancelled``; iteration ends quietly (KeyboardInterrupt is
  re-raised). ``.text`` keeps what had arrived.
- an ``{"error": ...}`` event mid-stream, a malformed (non-JSON) event, a dropped connection,
  or the end of the body without ``[DONE]``: ``StreamError`` with ``.partial_text``. The HTTP
  status was 200 by then, so these are stream errors, not APIStatusErrors; an error event's
  ``code``/``type`` are in the message.
- no event carrying data for longer than the read timeout (keep-alive comments and a byte now
  and then do not count), or the call's deadline passed: ``APITimeoutError``; ``.text`` keeps
  what had arrived.
- one event larger than ``sse.MAX_EVENT_BYTES``: ``StreamError`` naming the limit.
- an HTML page instead of events: ``StreamError`` saying to check ``PIENTEGER_BASE_URL``.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import requests

from ..errors import APIConnectionError, APITimeoutError, PientegerError, StreamError
from ..types import CallRecord, Chunk, Completion
from .body import describe_size
from .choices import Choices
from .httperrors import map_exception
from .redact import NO_KEY, Redactor
from .results import CallState, estimated_usage, record_text
from .sse import EventTooLarge, SSEDecoder
from .transport import drain

_READ_SIZE = 65536
# A StreamError's advice to Python callers (the magics and the form say it their own way).
_KEPT = "the text so far is in .partial_text"


class Stream:
    """A streamed completion; use it as a context manager and iterate it for str deltas of choice 0."""

    def __init__(
        self,
        response: requests.Response,
        *,
        call: CallState,
        report: Callable[[CallRecord], None],
        timeout: float | None = None,
        redact: Redactor = NO_KEY,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._response = response
        self._redact = redact  # masked out of error messages: a service may quote the key back
        self._clock = clock
        self._call = call
        self._report = report
        self._timeout = timeout
        self._lock = threading.Lock()
        self._choices = Choices()
        self._started = False
        self._reading = False
        self._cancelled = False
        self.status = "open"  # then "ok", "error" or "cancelled"
        self.completion: Completion | None = None
        self.error: PientegerError | None = None
        self.request_id = call.request_id
        self.ttft_s: float | None = None
        # per stream: the C scanner's memo is not shared across threads
        self._scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    # -- what the caller reads ---------------------------------------------------------
    @property
    def text(self) -> str:
        """Text of choice 0 so far."""
        return self._choices.text_of(0)

    @property
    def texts(self) -> dict[int, str]:
        """Text so far of every choice, by index."""
        return self._choices.texts()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def attempts(self) -> int:
        return max(self._call.attempts, 1)

    def __repr__(self) -> str:
        return f"<Stream {self._call.model} {self.status}, {len(self.text)} chars>"

    def __del__(self) -> None:
        # Dropped without being read to the end or closed: still one record, and no open socket.
        if getattr(self, "status", None) == "open":
            with contextlib.suppress(Exception):
                self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return self._iterate(chunks=False)  # type: ignore[return-value]

    def chunks(self) -> Iterator[Chunk]:
        """Chunk objects for every choice (and a last one carrying usage), instead of text deltas."""
        return self._iterate(chunks=True)  # type: ignore[return-value]

    def close(self) -> None:
        """Stop reading and close the response. Safe from any thread; an open stream is recorded cancelled."""
        with self._lock:
            was_open = self.status == "open"
            if was_open:
                self._cancelled = True
            reading = self._reading
        if was_open:
            self._abort()
            if not reading:  # nobody is iterating: nobody else will record it
                self._end("cancelled")
        else:
            self._response.close()

    # -- reading ----------------------------------------------------------------------
    def _abort(self) -> None:
        # shutdown() wakes a reader blocked in recv() in another thread; close() alone does not.
        # Either may fail when the connection is already released or closed: that is fine.
        with contextlib.suppress(Exception):
            self._response.raw.shutdown()
        with contextlib.suppress(Exception):
            self._response.close()

    def _byte_source(self) -> Iterator[bytes]:
        raw = self._response.raw
        encoded = self._response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
        if getattr(raw, "chunked", False) or not hasattr(raw, "read1") or encoded:
            # Sized pieces: one huge HTTP chunk must not be held whole before the decoder's cap
            # sees it. A compressed body (we ask for none) is decoded here, read as it fills.
            return self._response.iter_content(chunk_size=_READ_SIZE)
        # A close-delimited body: iter_content(None) would read it all before yielding anything,
        # so read what has arrived, as it arrives.
        read1 = raw.read1
        return iter(lambda: read1(_READ_SIZE), b"")

    def _iterate(self, *, chunks: bool) -> Iterator[Any]:
        with self._lock:
            if self._started:
                raise RuntimeError("a stream can be iterated only once; read .text or .completion")
            self._started = True
            if self.status != "open":
                return
            self._reading = True
        decoder = SSEDecoder()
        feed = decoder.feed_data
        source = self._byte_source()
        done = False
        apply = self._apply
        batches = self._event_batches(source, feed)
        try:
            # Two copies of the loop so the common (text) one does no per-event mode test.
            # While suspended at a yield, _reading is False: a close() then records at once (the
            # caller may never resume us); once resumed, a close() that came meanwhile ends the loop.
            if chunks:
                for events in batches:
                    for data in events:
                        if data == "[DONE]":
                            done = True
                            break
                        apply(data)
                        for chunk in self._choices.chunks_of(data):
                            self._reading = False
                            yield chunk
                            self._reading = True
                        if self._cancelled:
                            break
                    if done or self._cancelled:
                        break
            else:
                for events in batches:
                    for data in events:
                        if data == "[DONE]":
                            done = True
                            break
                        delta = apply(data)
                        if delta:
                            self._reading = False
                            yield delta
                            self._reading = True
                            if self._cancelled:
                                break
                    if done or self._cancelled:
                        break
            if not done and not self._cancelled:
                for event in decoder.close():
                    if event.data == "[DONE]":
                        done = True
                        break
                    delta = apply(event.data)
                    self._reading = False
                    if chunks:
                        yield from self._choices.chunks_of(event.data)
                    elif delta:
                        yield delta
                    self._reading = True
            if done:  # even if close() raced with the last event: it did finish
                self._end("ok")
                drain(self._response, source)
            elif self._cancelled:
                self._end("cancelled")
            else:
                raise self._ended_early(decoder)
        except GeneratorExit:  # the caller stopped iterating early
            self._cancelled = True
            self._end("cancelled")
            raise
        except Exception as exc:
            if self._cancelled:  # close() from another thread broke the read: end quietly
                self._end("cancelled")
                return
            err = self._translate(exc)
            self._end("error", err)
            if err is exc:
                raise
            raise err from exc
        except BaseException:  # KeyboardInterrupt and friends: keep the text, record cancelled
            self._cancelled = True
            self._end("cancelled")
            raise
        finally:
            self._reading = False
            self._response.close()

    def _event_batches(self, source: Iterator[bytes], feed: Callable[[bytes], list[str]]) -> Iterator[list[str]]:
        """The events each read completes; APITimeoutError when the stream stalls or passes its deadline.

        The read timeout counts between events that carry data: a server that sends only
        keep-alive comments, or a byte now and then, never trips the socket's own timeout.
        The clock is read only for reads that complete no event, and for every read when a
        deadline is set: the common stream pays one truth test per read.
        """
        clock = self._clock
        idle = self._timeout if self._timeout is not None else math.inf
        deadline = self._call.deadline if self._call.deadline is not None else math.inf
        timed = self._call.deadline is not None
        quiet_since: float | None = None
        for piece in source:
            events = feed(piece)
            if events:
                quiet_since = None
                if timed and clock() > deadline:
                    self._raise_stalled(True)
            else:
                now = clock()
                if quiet_since is None:
                    quiet_since = now
                if now - quiet_since > idle or now > deadline:
                    self._raise_stalled(now > deadline)
            yield events

    def _raise_stalled(self, past_deadline: bool) -> None:
        if past_deadline:
            message = "the call passed its deadline before the stream ended"
            advice = "the text so far is on the stream's .text; raise Client(deadline=...) or try again"
        else:
            message = f"the stream stalled: no data for {self._timeout:g} s (read timeout; keep-alive comments do not count)"
            advice = "the text so far is on the stream's .text; try again"
        raise APITimeoutError(message, advice=advice)

    def _ended_early(self, decoder: SSEDecoder) -> StreamError:
        head = decoder.head.lstrip()[:15].lower()
        if not self._choices.texts() and (head.startswith(b"<") or b"<html" in head or b"<!doctype" in head):
            return StreamError(
                f"the service answered HTTP {self._call.http_status or 200} with an HTML page, not a stream",
                advice="check PIENTEGER_BASE_URL (it should be the API root, e.g. .../oaiv1)",
                request_id=self.request_id,
            )
        cut = " (cut mid-event)" if decoder.truncated else ""
        return StreamError(
            f"the stream ended without [DONE]{cut}",
            advice=_KEPT + "; try again",
            partial_text=self.text,
            request_id=self.request_id,
        )

    def _translate(self, exc: Exception) -> PientegerError:
        if isinstance(exc, PientegerError):
            return exc
        if isinstance(exc, EventTooLarge):
            return StreamError(
                f"the service sent one event larger than {describe_size(exc.limit)}, more than any real "
                "event; the stream was stopped",
                advice=_KEPT + "; check PIENTEGER_BASE_URL",
                partial_text=self.text,
                request_id=self.request_id,
            )
        mapped = map_exception(exc, timeout=self._timeout)
        if isinstance(mapped, APITimeoutError):
            return APITimeoutError(
                f"the stream stalled: nothing arrived for {self._timeout:g} s (read timeout)",
                advice="the text so far is on the stream's .text; try again",
            )
        if isinstance(mapped, APIConnectionError):
            return StreamError(
                f"the connection dropped mid-stream ({type(exc).__name__})",
                advice=_KEPT + "; try again",
                partial_text=self.text,
                request_id=self.request_id,
            )
        return mapped

    def _parse_slow(self, data: str) -> Any:
        """json.loads for what the fast scanner refused (e.g. leading space), else a StreamError."""
        try:
            return json.loads(data)
        except ValueError:
            raise StreamError(
                f"the service sent a malformed event (not JSON): {self._redact(data)[:60]!r}",
                advice=_KEPT,
                partial_text=self.text,
                request_id=self.request_id,
            ) from None

    def _raise_error_event(self, obj: dict[str, Any]) -> None:
        err = self._redact.value(obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])})
        detail = ", ".join(f"{k} {err[k]}" for k in ("type", "code") if err.get(k))
        raise StreamError(
            self._redact(f"the service reported an error mid-stream: {err.get('message') or 'no message'}"
                         + (f" ({detail})" if detail else "")),
            advice=_KEPT,
            partial_text=self.text,
            request_id=self.request_id,
        )

    def _apply(self, data: str) -> str:
        """Fold one event into the state; the new text of choice 0."""
        # The C scanner directly: json.loads' Python wrappers cost as much as the parse here.
        try:
            obj, end = self._scan(data, 0)
            if end != len(data):
                obj = json.loads(data)  # trailing whitespace is fine, trailing junk raises
        except (StopIteration, ValueError):
            obj = self._parse_slow(data)
        if type(obj) is not dict:
            raise StreamError(f"unexpected event {self._redact(data)[:60]!r}", partial_text=self.text,
                              request_id=self.request_id)
        if "error" in obj:
            self._raise_error_event(obj)
        try:
            delta0, any_text = self._choices.fold(obj)
        except (AttributeError, TypeError, ValueError):
            raise StreamError(
                f"the service sent an event of an unexpected shape: {self._redact(data)[:60]!r}",
                advice=_KEPT,
                partial_text=self.text,
                request_id=self.request_id,
            ) from None
        if any_text and self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self._call.started
        return delta0

    # -- ending -------------------------------------------------------------------------
    def _end(self, status: str, error: PientegerError | None = None) -> None:
        """Record the outcome exactly once."""
        with self._lock:
            if self.status != "open":
                return
            self.status = status
        self.error = error
        latency = time.perf_counter() - self._call.started
        texts = self.texts
        choices = self._choices
        usage = choices.usage or estimated_usage(self._call.prompt, list(texts.values()))
        if status == "ok":
            self.completion = Completion(
                id=self._redact(choices.id),
                model=self._redact(choices.model or self._call.model),
                choices=choices.as_choices(texts, self._redact),
                usage=usage,
                created=choices.created,
                request_id=self.request_id,
                latency_s=latency,
                ttft_s=self.ttft_s,
                attempts=self.attempts,
                requested_model=self._call.model,
                ratelimit=dict(self._call.ratelimit),
                cached=self._call.cached,
            )
        self._report(
            self._call.record(
                status,
                error=error,
                usage=usage,
                text=record_text([texts[i] for i in sorted(texts)]),
                finish_reason=choices.finish.get(0),
                ttft_s=self.ttft_s,
                latency_s=latency,
                answer=self.completion,
            )
        )


__all__ = ["Stream"]

