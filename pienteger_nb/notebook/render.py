"""Throttled in-place display of streaming text, and the finished output's formats.

``StreamView`` shows text as it arrives through IPython display updates (``display_id``), so
it works in JupyterLab, Notebook 7, VS Code and nbconvert with no widget. ``render_output``
turns a finished ``Completion`` into a MIME bundle plus provenance metadata; ``usage_line``
is the short line shown after it. IPython is imported only when something is displayed.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..throttle import Throttle
from ..types import Completion

Bundle = dict[str, Any]
STOPPED_MARK = "[stopped]"


class Sink(Protocol):
    """Where a StreamView's states go: the running text, then one final bundle."""

    def stream(self, text: str) -> None: ...

    def final(self, data: Bundle, metadata: dict[str, Any]) -> None: ...


class DisplaySink:
    """One display output, created on the first message and updated in place after it.

    With ``markdown=True`` the running text is also sent as Markdown, so a Markdown result
    reads the same while it streams as when it is done (no jump from monospace at the end).
    """

    def __init__(self, *, markdown: bool = False) -> None:
        self.display_id: str | None = None
        self.markdown = markdown
        self.sent = 0

    def stream(self, text: str) -> None:
        self._publish(
            {"text/markdown": text, "text/plain": text} if self.markdown else {"text/plain": text}, {}
        )

    def final(self, data: Bundle, metadata: dict[str, Any]) -> None:
        self._publish(data, metadata)

    def _publish(self, data: Bundle, metadata: dict[str, Any]) -> None:
        from IPython.display import display

        update = self.display_id is not None
        if self.display_id is None:
            self.display_id = os.urandom(16).hex()  # as uuid4().hex, without importing uuid at %load_ext
        # raw=True: the bundle is already MIME-keyed; no formatter runs on the hot path.
        display(data, raw=True, metadata=metadata, display_id=self.display_id, update=update)
        self.sent += 1


class TerminalSink:
    """Terminal IPython: a display update would reprint the whole text, so print new text only."""

    def __init__(self, out: Any = None) -> None:
        self._out = out
        self._printed = ""
        self.sent = 0

    def _write(self, text: str) -> None:
        out = self._out or sys.stdout
        out.write(text)
        out.flush()
        self.sent += 1

    def stream(self, text: str) -> None:
        if text.startswith(self._printed):
            self._write(text[len(self._printed) :])
        else:  # the text was rewritten (not seen in practice): start a fresh line
            self._write("\n" + text)
        self._printed = text

    def final(self, data: Bundle, metadata: dict[str, Any]) -> None:
        plain = str(data.get("text/plain", ""))
        if not self._printed:
            self._write(plain + "\n")
        elif plain.startswith(self._printed):
            self._write(plain[len(self._printed) :] + "\n")
        else:  # already on screen as streamed; the formatted form adds nothing in a terminal
            self._write("\n")


def sink_for_shell(shell: Any, *, markdown: bool = False) -> Sink:
    """A DisplaySink in a kernel (or under capture_output), a TerminalSink in terminal IPython."""
    from IPython.core.displaypub import DisplayPublisher

    if shell is not None and type(getattr(shell, "display_pub", None)) is DisplayPublisher:
        return TerminalSink()
    return DisplaySink(markdown=markdown)


class StreamView:
    """Streaming text shown in place, throttled to one front-end update per ``interval``.

    ``update(text)`` gives the full text so far; the first non-empty text is shown at once,
    later ones at most every ``interval`` seconds. ``finish`` always sends the final state.
    ``updates`` counts the messages sent; ``first_shown_s`` is the clock reading when the
    first text reached the sink.
    """

    def __init__(
        self,
        *,
        sink: Sink | None = None,
        interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sink = sink
        self._clock = clock
        self.throttle = Throttle(interval, clock=clock)
        self.text = ""
        self._shown: str | None = None
        self.updates = 0
        self.first_shown_s: float | None = None
        self.finished = False

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            from IPython import get_ipython

            self._sink = sink_for_shell(get_ipython())
        return self._sink

    def update(self, text: str) -> bool:
        """Record the text so far; returns True when it was sent to the front end now."""
        self.text = text
        if not text or text == self._shown or not self.throttle.ready():
            return False
        self._send_text(text)
        return True

    def flush(self) -> None:
        """Send the current text if the front end has not seen it yet."""
        if self.text and self.text != self._shown:
            self._send_text(self.text)

    def finish(self, data: Bundle, metadata: dict[str, Any]) -> None:
        """Replace the streaming text with the finished output (always sent)."""
        self.sink.final(data, metadata)
        self.updates += 1
        self.finished = True

    def stop(self, *, mark: str = STOPPED_MARK, metadata: dict[str, Any] | None = None) -> None:
        """Keep the partial text on screen, marked (``[stopped]`` by default), in the format it
        streamed in: markdown that streamed as markdown stays rendered, the mark a paragraph of it."""
        sep = "" if not self.text or self.text.endswith("\n") else "\n"
        data: Bundle = {"text/plain": self.text + sep + mark}
        if getattr(self.sink, "markdown", False):
            data["text/markdown"] = (self.text.rstrip("\n") + "\n\n" + mark) if self.text else mark
        self.finish(data, metadata or {})

    def _send_text(self, text: str) -> None:
        self.sink.stream(text)
        self._shown = text
        self.updates += 1
        if self.first_shown_s is None:
            self.first_shown_s = self._clock()


# --- Finished output ------------------------------------------------------------------------

# Patterns stay strings until first used (re caches them), so importing this module is cheap.
_FENCE = r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)"

# First match wins; checked on the code itself (fences already stripped).
_LANGUAGE_HINTS: tuple[tuple[str, str, re.RegexFlag], ...] = (
    ("html", r"^\s*<(!doctype|html|div|p|span|body|head|table|ul|a)\b", re.IGNORECASE),
    (
        "sql",
        r"^\s*(select|insert|update|delete|create|with)\b[\s\S]*\b(from|into|set|table|as)\b",
        re.IGNORECASE,
    ),
    ("python", r"^\s*(def |class |import |from \w[\w.]* import |print\(|async def |@\w)", re.MULTILINE),
    ("javascript", r"^\s*(function\b|const |let |var |export |console\.log\()|=>", re.MULTILINE),
    ("bash", r"^(#!/bin/|\s*\$ |\s*(sudo|pip|apt-get|cd|ls|echo|export) )", re.MULTILINE),
    ("c", r"^\s*#include\b|\bint main\s*\(", re.MULTILINE),
    ("rust", r"^\s*(fn |let mut |use std::|impl )", re.MULTILINE),
    ("go", r"^\s*(package \w+|func )", re.MULTILINE),
)


def strip_fences(text: str) -> tuple[str, str | None]:
    """(code, language tag) with Markdown code fences removed; all fenced blocks are joined.

    Text without fences is returned as it is (without surrounding blank lines), with no tag.
    """
    blocks = [(m.group(2) or None, m.group(3)) for m in re.finditer(_FENCE, text, re.MULTILINE | re.DOTALL)]
    if not blocks:
        return text.strip("\n"), None
    tag = next((t for t, _ in blocks if t), None)
    return "\n\n".join(code.rstrip("\n") for _, code in blocks), tag


def guess_language(code: str) -> str:
    """A Pygments language name for a piece of code; ``text`` when nothing fits."""
    stripped = code.strip()
    if stripped[:1] in "{[":
        try:
            json.loads(stripped)
            return "json"
        except ValueError:
            pass
    for name, pattern, flags in _LANGUAGE_HINTS:
        if re.search(pattern, code, flags):
            return name
    return "text"


def _highlight(code: str, language: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound

        try:
            lexer = get_lexer_by_name(language)
        except ClassNotFound:
            lexer = get_lexer_by_name("text")
        # Inline styles: the output renders the same in nbconvert HTML, with no stylesheet.
        return str(highlight(code, lexer, HtmlFormatter(noclasses=True, nobackground=True)))
    except ImportError:  # pragma: no cover - pygments comes with IPython
        return f"<pre>{html.escape(code)}</pre>"


def provenance(completion: Completion, *, fmt: str | None = None, params: dict[str, Any] | None = None,
               started: str | None = None) -> dict[str, Any]:
    """The facts about a completion kept in its output's metadata under ``"pienteger"``: who
    answered, the parameters as the API names them, tokens, cost (None: unpriced), cached, time."""
    from .usage_line import call_cost

    usage = completion.usage
    info: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": call_cost(completion),
        "cached": completion.cached,
        "time": started,
        "params": dict(params or {}),
        "model": completion.model,
        "requested_model": completion.requested_model,
        "id": completion.id,
        "request_id": completion.request_id,
        "finish_reason": completion.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "source": usage.source,
        },
        "latency_s": round(completion.latency_s, 4),
        "ttft_s": None if completion.ttft_s is None else round(completion.ttft_s, 4),
        "attempts": completion.attempts,
    }
    if fmt:
        info["format"] = fmt
    return info


def _choices_text(completion: Completion, separator: str) -> str:
    if len(completion.choices) <= 1:
        return completion.text
    return separator.join(c.text for c in completion.choices)


def completion_json(completion: Completion) -> Any:
    """The Completion as plain JSON data (dicts, lists, strings, numbers)."""
    return json.loads(json.dumps(dataclasses.asdict(completion), default=str))


def render_output(completion: Completion, fmt: str = "markdown", *, params: dict[str, Any] | None = None,
                  started: str | None = None) -> tuple[Bundle, dict[str, Any]]:
    """(MIME bundle, metadata) for a finished completion in one of the formats.

    markdown (default), text, code (fences stripped, language guessed, highlighted HTML),
    html, json (the text when it parses as a JSON object or array, else the Completion).
    """
    meta: dict[str, Any] = {"pienteger": provenance(completion, fmt=fmt, params=params, started=started)}
    if fmt == "text":
        return {"text/plain": _choices_text(completion, "\n\n---\n\n")}, meta
    if fmt == "markdown":
        text = _choices_text(completion, "\n\n---\n\n")
        return {"text/markdown": text, "text/plain": text}, meta
    if fmt == "html":
        text = _choices_text(completion, "\n<hr>\n")
        return {"text/html": text, "text/plain": text}, meta
    if fmt == "code":
        code, tag = strip_fences(_choices_text(completion, "\n\n"))
        language = (tag or guess_language(code)).lower()
        meta["pienteger"]["language"] = language
        return {"text/html": _highlight(code, language), "text/plain": code}, meta
    if fmt == "json":
        parsed: Any = None
        try:
            parsed = json.loads(strip_fences(completion.text)[0])
        except ValueError:
            pass
        if not isinstance(parsed, (dict, list)):
            parsed = completion_json(completion)
            meta["pienteger"]["json_source"] = "completion"
        else:
            meta["pienteger"]["json_source"] = "text"
        return {"application/json": parsed, "text/plain": json.dumps(parsed, indent=2)}, meta
    raise ValueError(f"unknown format {fmt!r}; expected markdown, text, code, html or json")


def insertion(completion: Completion, fmt: str) -> str:
    """The source ``--insert`` puts in a new cell: the code itself for ``-f code`` (fences
    stripped); otherwise a ``%%markdown`` cell, which every front end renders as Markdown when
    run (``set_next_input`` can only make code cells)."""
    text = _choices_text(completion, "\n\n")
    if fmt == "code":
        return strip_fences(text)[0]
    if fmt == "markdown":
        return "%%markdown\n" + text.strip("\n")
    return text


def _spelling(model: str) -> str:
    return re.sub(r"[^0-9a-z]", "", model.lower())


def shown_model(asked: str | None, served: str | None) -> str:
    """The model asked for, and the served one only when it differs in more than spelling.

    The service answers ``text-davinci:003`` to a request for ``text-davinci-003``: the same
    model, and showing both names (the usage line one, the form the other) looked like two.
    """
    asked, served = asked or served or "", served or ""
    if served and _spelling(served) != _spelling(asked):
        return f"{asked} (served by {served})"
    return asked


def usage_line(completion: Completion, *, emulator: bool = False) -> str:
    """``text-davinci-003 · 5 → 7 tokens · $0.0003 · 0.42 s`` ("cached" for a replay, "unpriced"
    for a model without a price), with ``(estimated)`` when we counted and ``· emulator`` when the
    answer came from the bundled emulator (its text is unrelated prose)."""
    from .usage_line import call_cost, format_usd

    u = completion.usage
    model = shown_model(completion.requested_model, completion.model)
    cost = "cached" if completion.cached else format_usd(call_cost(completion))
    line = f"{model} · {u.prompt_tokens} → {u.completion_tokens} tokens · {cost} · {completion.latency_s:.2f} s"
    if u.source == "estimated":
        line += " (estimated)"
    if completion.finish_reason == "length":
        line += " · stopped at max_tokens"
    if emulator:
        line += " · emulator"
    return line


def usage_bundle(completion: Completion, *, emulator: bool = False) -> tuple[Bundle, dict[str, Any]]:
    """The usage line as a small grey display (plain text elsewhere)."""
    from .usage_line import bundle

    return bundle(usage_line(completion, emulator=emulator),
                  {"request_id": completion.request_id, "cached": completion.cached})


__all__ = [
    "STOPPED_MARK",
    "DisplaySink",
    "StreamView",
    "TerminalSink",
    "completion_json",
    "guess_language",
    "insertion",
    "provenance",
    "render_output",
    "shown_model",
    "sink_for_shell",
    "strip_fences",
    "usage_bundle",
    "usage_line",
]
