"""Answers from the replay cache, given back the way the service would: a Completion for
``complete``, a Stream whose deltas are the stored text for ``stream``.

A replayed stream is a real ``Stream`` fed with server-sent events made from the stored
answer, so it behaves as a live one does (deltas, chunks, ``.texts``, ``close()``, one record).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..types import CallRecord, Completion
from .results import CallState, record_text
from .stream import Stream

# Word-sized pieces, about what the service sends per event.
_PIECE = re.compile(r"\s*\S+|\s+")


class _NoResponse:
    """Stands in for the HTTP response of a replay: nothing to read, nothing to close."""

    raw = None

    def close(self) -> None:
        return None


class ReplayStream(Stream):
    """A Stream over a stored answer; nothing is sent."""

    def __init__(self, answer: Completion, *, call: CallState, report: Callable[[CallRecord], None]):
        super().__init__(_NoResponse(), call=call, report=report)  # type: ignore[arg-type]
        self._answer = answer
        # The stored usage, as it was (reported or estimated), not one recounted from the text.
        self._choices.usage = answer.usage
        self.request_id = answer.request_id

    def _byte_source(self) -> Iterator[bytes]:
        return replay_events(self._answer)


def replay_events(answer: Completion) -> Iterator[bytes]:
    """The stored answer as server-sent events: each choice's text in pieces, then the finish
    reasons (with logprobs), then ``[DONE]``."""
    head = {"id": answer.id, "object": "text_completion", "created": answer.created, "model": answer.model}

    def event(choice: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n"

    for choice in answer.choices:
        for piece in _PIECE.findall(choice.text):
            yield event({"index": choice.index, "text": piece, "finish_reason": None, "logprobs": None})
    for choice in answer.choices:
        yield event({"index": choice.index, "text": "", "finish_reason": choice.finish_reason,
                     "logprobs": choice.logprobs})
    yield b"data: [DONE]\n\n"


def replayed_completion(answer: Completion, call: CallState) -> Completion:
    """The stored answer as this call's result: marked cached, timed now."""
    return dataclasses.replace(
        answer, latency_s=time.perf_counter() - call.started, ttft_s=None, attempts=1,
        requested_model=call.model, ratelimit={}, cached=True,
    )


def replayed_record(result: Completion, call: CallState) -> CallRecord:
    return call.record("ok", usage=result.usage, text=record_text([c.text for c in result.choices]),
                       finish_reason=result.finish_reason, latency_s=result.latency_s)


__all__ = ["ReplayStream", "replay_events", "replayed_completion", "replayed_record"]
