"""The PromptForm's pure parts: the throttled painter (fake clock and timer), the stop field's
syntax, the status line and the one-sentence errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from pienteger_nb.client.httperrors import status_error
from pienteger_nb.client.results import estimate_tokens
from pienteger_nb.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    InternalServerError,
    StreamError,
)
from pienteger_nb.notebook.form_text import error_sentence, parse_stop, status_summary, unescape
from pienteger_nb.notebook.form_view import _Painter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """Timers that fire only when the test says the fake time has come."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> None:
        self.pending.append((self.clock.now + delay, fn))

    def run_due(self) -> None:
        due = [t for t in self.pending if t[0] <= self.clock.now + 1e-12]
        self.pending = [t for t in self.pending if t[0] > self.clock.now + 1e-12]
        for _, fn in due:
            fn()


@pytest.fixture
def painter_parts():
    clock = FakeClock()
    timers = FakeTimers(clock)
    shown: list[str] = []
    painter = _Painter(shown.append, interval=0.05, clock=clock, timer=timers)
    return clock, timers, shown, painter


def test_first_text_shows_at_once_then_waits_for_the_interval(painter_parts):
    clock, timers, shown, painter = painter_parts
    painter.offer("a")
    assert shown == ["a"]
    clock.now = 0.01
    painter.offer("ab")
    clock.now = 0.02
    painter.offer("abc")
    assert shown == ["a"]
    assert len(timers.pending) == 1  # one trailing paint scheduled, not one per token
    clock.now = 0.06
    timers.run_due()
    assert shown == ["a", "abc"]  # the newest text lands although no token came after the pause


def test_finish_always_lands_and_nothing_paints_after_it(painter_parts):
    clock, timers, shown, painter = painter_parts
    painter.offer("a")
    clock.now = 0.01
    painter.offer("ab")
    painter.finish("abc")
    assert shown == ["a", "abc"]
    clock.now = 1.0
    timers.run_due()
    painter.offer("abcd")
    assert shown == ["a", "abc"]


def test_finish_does_not_repeat_the_text_on_screen(painter_parts):
    _clock, _timers, shown, painter = painter_parts
    painter.offer("same")
    painter.finish("same")
    assert shown == ["same"]
    assert painter.paints == 1


def test_a_thousand_tokens_a_second_paint_at_most_twenty_times_a_second(painter_parts):
    clock, timers, shown, painter = painter_parts
    text = ""
    for i in range(2000):  # 2 s of tokens, one per millisecond
        clock.now = i / 1000
        timers.run_due()
        text += f" t{i}"
        painter.offer(text)
    clock.now = 2.0
    painter.finish(text)
    assert shown[-1] == text
    assert 20 <= painter.paints <= 2 * 20 + 1
    assert len(timers.pending) <= 1


def test_stop_field_splits_on_commas_and_newlines_with_escapes():
    assert parse_stop("") == []
    assert parse_stop("###") == ["###"]
    assert parse_stop(r"\n\n, ###") == ["\n\n", "###"]
    assert parse_stop("END\nSTOP") == ["END", "STOP"]
    assert parse_stop(r"a\,b, \t") == ["a,b", "\t"]
    assert parse_stop(" , ,x") == ["x"]
    assert parse_stop(r"C:\path") == [r"C:\path"]  # unknown escapes stay as typed


def test_unescape_suffix():
    assert unescape(r"the end\n") == "the end\n"
    assert unescape(r"tab\there \\n") == "tab\there \\n"


def test_estimate_tokens_uses_the_documented_tokenizer():
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("Once upon a time") == 4


def test_status_summary_figures():
    line = status_summary(model="text-davinci:003", prompt_tokens=5, completion_tokens=120, seconds=2.314,
                          finish_reason="length", usage_source="reported")
    assert line == "text-davinci:003 · 5 → 120 tokens (reported) · 2.31 s · finish: length"
    priced = status_summary(model="m", prompt_tokens=5, completion_tokens=120, seconds=2.314,
                            finish_reason="stop", usage_source="reported", cost="$0.0025")
    assert priced == "m · 5 → 120 tokens (reported) · $0.0025 · 2.31 s · finish: stop"
    stopped = status_summary(model="m", prompt_tokens=5, completion_tokens=7, seconds=1,
                             finish_reason=None, usage_source="estimated", stopped=True)
    assert stopped.startswith("Stopped · m · 5 → 7 tokens (estimated)")
    assert "partial text kept" in stopped
    before_any = status_summary(model="m", prompt_tokens=5, completion_tokens=0, seconds=0.1,
                                finish_reason=None, usage_source="estimated", stopped=True)
    assert before_any.endswith("· no text had arrived") and "kept" not in before_any


def _answer(status, message="", *, code=None, param=None, retry_after=None, rid=None):
    """The error the client raises for this answer (its message carries the advice)."""
    fields = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    body = json.dumps({"error": fields}).encode() if message or code else b""
    return status_error(status, body, {"x-request-id": rid} if rid else {}, path="/completions",
                        retry_after=retry_after)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_answer(401, "Incorrect API key provided", rid="req_1"),
         ("Error: 401 unauthorized: Incorrect API key provided: check PIENTEGER_API_KEY or run "
          "%pienteger login (request req_1).")),
        (_answer(404, "The model 'nope' does not exist", code="model_not_found"),
         "Error: 404 not found: The model 'nope' does not exist: check the model name"),
        (_answer(400, "bad value", param="temperature"), "fix temperature and try again"),
        (_answer(429, "slow down", retry_after=3.0), "wait 3"),
        (_answer(429, "quota", code="insufficient_quota"), "quota is used up"),
        (_answer(503), "Error: 503 service unavailable: HTTP 503 with an empty body: trouble"),
        (ConfigurationError("no Pienteger API key: set PIENTEGER_API_KEY"), "Error: no Pienteger API key"),
        (APITimeoutError("read timed out"), "raise the timeout"),
        (APIConnectionError("connection refused"), "check PIENTEGER_BASE_URL"),
        (APIConnectionError("the service answered HTTP 200 with a body that is not valid JSON"),
         "Error: the service answered HTTP 200 with a body that is not valid JSON; if it keeps"),
        (StreamError("stream ended without [DONE]", partial_text="x"), "the text so far is kept"),
        (ValueError("temperature must be within 0..2"), "Error: temperature must be within 0..2."),
    ],
)
def test_error_sentence_says_what_failed_and_what_to_do(exc, expected):
    sentence = error_sentence(exc)
    assert expected in sentence
    assert sentence.startswith("Error: ")
    assert "\n" not in sentence
    assert "Traceback" not in sentence


def test_a_broken_stream_says_whether_text_was_kept_and_not_how_the_client_names_it():
    # As the client raises it: what happened, then advice for Python callers (.partial_text).
    def broken(partial: str) -> StreamError:
        return StreamError("the stream ended without [DONE]", partial_text=partial, request_id="req_3",
                           advice="the text so far is in .partial_text; try again")

    assert ".partial_text" in str(broken("Once"))
    kept = error_sentence(broken("Once"))
    assert kept == "Error: the stream broke (the stream ended without [DONE]); the text so far is kept (request req_3)."
    assert "no text had arrived" in error_sentence(broken(""))
    assert ".partial_text" not in error_sentence(broken(""))


def test_a_timeout_sentence_names_no_client_attributes():
    stalled = APITimeoutError("the stream stalled: nothing arrived for 0.5 s (read timeout)",
                              advice="the text so far is on the stream's .text; try again")
    silent = APITimeoutError("the service sent nothing within 0.5 s (read timeout)",
                             advice="try again or raise Client(timeout=...)")
    for exc in (stalled, silent):
        sentence = error_sentence(exc)
        assert ".text" not in sentence and "Client(" not in sentence and sentence.count("try again") == 1
        assert sentence.endswith("raise the timeout with %pienteger config timeout=120."), sentence


def test_error_sentence_is_one_line_and_hides_secrets():
    exc = InternalServerError("line one\nline two <html>  " + "x" * 1000 + " sk-SECRET", status_code=500)
    sentence = error_sentence(exc, secrets=["sk-SECRET"])
    assert "\n" not in sentence
    assert len(sentence) <= 420
    assert "sk-SECRET" not in error_sentence(ValueError("key sk-SECRET"), secrets=["sk-SECRET"])


def test_error_sentence_gives_the_advice_once():
    exc = AuthenticationError("Invalid key: check PIENTEGER_API_KEY or run %pienteger login",
                              status_code=401, request_id="req_9")
    sentence = error_sentence(exc)
    assert sentence == ("Error: 401 unauthorized: Invalid key: check PIENTEGER_API_KEY or run "
                        "%pienteger login (request req_9).")


def test_finish_sends_the_final_form_even_when_the_text_is_on_screen():
    shown: list[str] = []
    finals: list[str] = []
    painter = _Painter(shown.append, final=finals.append, interval=0.05, clock=lambda: 0.0,
                       timer=lambda delay, fn: None)
    painter.offer("done")
    painter.finish("done")
    assert shown == ["done"] and finals == ["done"]
    empty = _Painter(shown.append, final=finals.append, clock=lambda: 0.0, timer=lambda delay, fn: None)
    empty.finish("")  # nothing was shown, nothing to finish
    assert finals == ["done"]
