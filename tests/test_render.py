"""StreamView throttling with an injected clock, the output formats and the usage line."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest

from pienteger_nb.notebook.render import (
    StreamView,
    TerminalSink,
    guess_language,
    render_output,
    strip_fences,
    usage_line,
)
from pienteger_nb.throttle import Throttle
from pienteger_nb.types import Choice, Completion, Usage


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingSink:
    """Records what a StreamView sends: ("stream", text) and ("final", data, metadata)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def stream(self, text: str) -> None:
        self.events.append(("stream", text))

    def final(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.events.append(("final", data, metadata))


def make_completion(text: str = "Hello world", **kw: Any) -> Completion:
    choices = kw.pop("choices", (Choice(text=text, index=0, finish_reason="stop"),))
    usage = kw.pop("usage", Usage(prompt_tokens=5, completion_tokens=7, total_tokens=12))
    return Completion(
        id="cmpl-1",
        model="text-davinci:003",
        choices=choices,
        usage=usage,
        request_id="req-1",
        latency_s=0.4213,
        ttft_s=0.01,
        requested_model="text-davinci-003",
        **kw,
    )


def test_throttle_first_at_once_then_one_per_interval() -> None:
    clock = FakeClock()
    throttle = Throttle(0.05, clock=clock)
    assert throttle.ready()
    assert not throttle.ready()
    clock.now += 0.049
    assert not throttle.ready()
    clock.now += 0.001
    assert throttle.ready()
    assert throttle.sent == 2


def test_first_text_is_shown_at_once_and_updates_are_bounded() -> None:
    clock, sink = FakeClock(), RecordingSink()
    view = StreamView(sink=sink, clock=clock)
    text = ""
    # 2,000 tokens at 1,000 tokens/s: 2 simulated seconds.
    for i in range(2000):
        text += f" t{i}"
        view.update(text)
        if i == 0:
            assert sink.events == [("stream", " t0")]  # no wait for a throttle window
            assert view.first_shown_s == clock.now
        clock.now += 0.001
    streamed = [e for e in sink.events if e[0] == "stream"]
    assert len(streamed) <= 2 * 20 + 1
    assert len(streamed) >= 2 * 20 - 1  # and it does keep updating
    view.finish({"text/plain": text}, {"pienteger": {}})
    assert sink.events[-1] == ("final", {"text/plain": text}, {"pienteger": {}})
    assert view.updates == len(sink.events)


def test_the_last_state_lands_even_inside_a_throttle_window() -> None:
    clock, sink = FakeClock(), RecordingSink()
    view = StreamView(sink=sink, clock=clock)
    view.update("a")
    view.update("ab")  # same instant: held back
    assert sink.events == [("stream", "a")]
    view.flush()
    assert sink.events[-1] == ("stream", "ab")
    view.flush()  # nothing new: nothing sent
    assert len(sink.events) == 2


def test_empty_and_repeated_text_sends_nothing() -> None:
    clock, sink = FakeClock(), RecordingSink()
    view = StreamView(sink=sink, clock=clock)
    view.update("")
    assert sink.events == []
    view.update("x")
    clock.now += 1
    view.update("x")
    assert sink.events == [("stream", "x")]


def test_stop_keeps_the_partial_text_marked() -> None:
    sink = RecordingSink()
    view = StreamView(sink=sink, clock=FakeClock())
    view.update("Once upon")
    view.stop(metadata={"pienteger": {"status": "cancelled"}})
    kind, data, meta = sink.events[-1]
    assert kind == "final"
    assert data == {"text/plain": "Once upon\n[stopped]"}
    assert meta["pienteger"]["status"] == "cancelled"


def test_terminal_sink_prints_only_new_text() -> None:
    out = io.StringIO()
    sink = TerminalSink(out)
    view = StreamView(sink=sink, clock=FakeClock(), interval=0)
    for text in ("Hel", "Hello", "Hello, world"):
        view.update(text)
    view.finish({"text/plain": "Hello, world", "text/markdown": "Hello, world"}, {})
    assert out.getvalue() == "Hello, world\n"


def test_markdown_is_the_default_with_provenance() -> None:
    data, meta = render_output(make_completion("# Title\n\nbody"))
    assert data == {"text/markdown": "# Title\n\nbody", "text/plain": "# Title\n\nbody"}
    info = meta["pienteger"]
    assert info["model"] == "text-davinci:003"
    assert info["requested_model"] == "text-davinci-003"
    assert info["request_id"] == "req-1"
    assert info["finish_reason"] == "stop"
    assert info["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "source": "reported",
    }
    assert info["format"] == "markdown"
    json.dumps(meta)  # metadata must be JSON for the notebook file


def test_text_and_html_formats() -> None:
    assert render_output(make_completion("<b>x</b>"), "text")[0] == {"text/plain": "<b>x</b>"}
    data, _ = render_output(make_completion("<b>x</b>"), "html")
    assert data["text/html"] == "<b>x</b>"


def test_code_format_strips_fences_and_highlights() -> None:
    text = "Here you go:\n```python\ndef f(x):\n    return x * 2\n```\nEnjoy."
    data, meta = render_output(make_completion(text), "code")
    assert data["text/plain"] == "def f(x):\n    return x * 2"
    assert "```" not in data["text/plain"] and "```" not in data["text/html"]
    assert meta["pienteger"]["language"] == "python"
    assert "<span" in data["text/html"]  # highlighted


def test_code_format_guesses_the_language_without_fences() -> None:
    _, meta = render_output(make_completion("SELECT name FROM users WHERE id = 1;"), "code")
    assert meta["pienteger"]["language"] == "sql"


@pytest.mark.parametrize(
    ("code", "language"),
    [
        ("import os\nprint(os.getcwd())", "python"),
        ("const x = 1;\nconsole.log(x);", "javascript"),
        ('{"a": [1, 2]}', "json"),
        ("<div><p>hi</p></div>", "html"),
        ("#!/bin/bash\necho hi", "bash"),
        ("#include <stdio.h>\nint main(void) { return 0; }", "c"),
        ("just some words", "text"),
    ],
)
def test_guess_language(code: str, language: str) -> None:
    assert guess_language(code) == language


def test_strip_fences_cases() -> None:
    assert strip_fences("x = 1") == ("x = 1", None)
    assert strip_fences("```\nx = 1\n```") == ("x = 1", None)
    assert strip_fences("```js\nlet a\n```\ntext\n```js\nlet b\n```") == ("let a\n\nlet b", "js")
    # Cut off by max_tokens before the closing fence.
    assert strip_fences("```python\ndef f():\n    pa") == ("def f():\n    pa", "python")


def test_json_format_parses_json_text() -> None:
    data, meta = render_output(make_completion(' {"answer": 42, "tags": ["a"]}'), "json")
    assert data["application/json"] == {"answer": 42, "tags": ["a"]}
    assert meta["pienteger"]["json_source"] == "text"


def test_json_format_shows_the_completion_when_the_text_is_not_json() -> None:
    data, meta = render_output(make_completion("plain words"), "json")
    payload = data["application/json"]
    assert payload["choices"][0]["text"] == "plain words"
    assert payload["request_id"] == "req-1"
    assert meta["pienteger"]["json_source"] == "completion"


def test_several_choices_are_all_shown() -> None:
    choices = (Choice(text="one", index=0), Choice(text="two", index=1))
    data, _ = render_output(make_completion(choices=choices), "markdown")
    assert "one" in data["text/markdown"] and "two" in data["text/markdown"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render_output(make_completion(), "xml")


def test_usage_line() -> None:
    # The model asked for; the served "text-davinci:003" is the same model spelled otherwise.
    assert usage_line(make_completion()) == "text-davinci-003 · 5 → 7 tokens · unpriced · 0.42 s"
    other = dataclasses.replace(make_completion(), model="davinci-002-fallback")
    assert usage_line(other).startswith("text-davinci-003 (served by davinci-002-fallback) · ")
    assert usage_line(make_completion(), emulator=True).endswith(" · emulator")
    estimated = make_completion(usage=Usage(5, 7, 12, source="estimated"))
    assert usage_line(estimated).endswith("(estimated)")


def test_a_stopped_markdown_stream_stays_markdown_with_the_mark_as_a_paragraph() -> None:
    from pienteger_nb.notebook.render import DisplaySink, StreamView

    class Recorder(DisplaySink):
        def __init__(self) -> None:
            super().__init__(markdown=True)
            self.bundles: list[dict[str, Any]] = []

        def _publish(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
            self.bundles.append(data)

    sink = Recorder()
    view = StreamView(sink=sink, clock=lambda: 0.0)
    view.update("# Title\n\nSome **bold** text")
    view.stop()
    last = sink.bundles[-1]
    assert last["text/markdown"] == "# Title\n\nSome **bold** text\n\n[stopped]"
    assert last["text/plain"].endswith("\n[stopped]")
    # A plain-text stream stops as plain text, as before.
    plain = Recorder()
    plain.markdown = False
    view = StreamView(sink=plain, clock=lambda: 0.0)
    view.update("partial")
    view.stop()
    assert "text/markdown" not in plain.bundles[-1]
