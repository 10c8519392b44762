"""The words of the PromptForm: its status line, one-sentence errors, and the stop field's syntax."""

from __future__ import annotations

import http
from collections.abc import Iterable

from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    StreamError,
)
from .failures import with_advice

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", ",": ","}
MAX_SENTENCE = 400


def unescape(text: str) -> str:
    r"""``\n``, ``\t``, ``\r``, ``\\`` and ``\,`` become the characters they name; other
    backslashes stay as typed."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_stop(text: str) -> list[str]:
    r"""Stop sequences from the form's field: separated by commas or newlines, spaces around
    each trimmed, ``\n``/``\t`` escapes for newline and tab, ``\,`` for a literal comma."""
    pieces: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch in ",\n":
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    pieces.append("".join(current))
    return [unescape(p.strip(" ")) for p in pieces if p.strip(" ")]


def status_summary(
    *,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    seconds: float,
    finish_reason: str | None,
    usage_source: str,
    stopped: bool = False,
    cost: str = "",
) -> str:
    """``model · 5 → 120 tokens (reported) · $0.0025 · 2.31 s · finish: length``; ``Stopped · ...``
    after a stop. ``cost`` is what the call cost as shown (``$0.0025``, "unpriced", "cached"); empty
    leaves it out."""
    parts = [model, f"{prompt_tokens} → {completion_tokens} tokens ({usage_source})"]
    if cost:
        parts.append(cost)
    parts.append(f"{seconds:.2f} s")
    if stopped:
        kept = "partial text kept" if completion_tokens else "no text had arrived"
        return "Stopped · " + " · ".join(parts) + " · " + kept
    parts.append(f"finish: {finish_reason or 'unknown'}")
    return " · ".join(parts)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def error_sentence(exc: BaseException, *, secrets: Iterable[str] = ()) -> str:
    """One line that says what failed and what to do, e.g.
    ``Error: 401 unauthorized: bad key; check PIENTEGER_API_KEY ... (request req_1).``"""
    if isinstance(exc, APIStatusError):
        message = with_advice(exc.message or "", exc.advice).rstrip(".")
        head = f"{exc.status_code} {_phrase(exc.status_code)}"
        text = f"{head}: {message}" if message else head
        if exc.request_id:
            text += f" (request {exc.request_id})"
    elif isinstance(exc, ConfigurationError):
        text = str(exc)
    elif isinstance(exc, APITimeoutError):  # the message, without the client's advice for Python callers
        text = f"no answer in time ({exc.message}); try again, or raise the timeout with %pienteger config timeout=120"
    elif isinstance(exc, APIConnectionError):
        text = f"{exc}; if it keeps failing, check PIENTEGER_BASE_URL and the network"
    elif isinstance(exc, StreamError):
        rid = getattr(exc, "request_id", None)
        message = exc.message  # the client's advice points at .partial_text, which a form user never sees
        kept = "the text so far is kept" if exc.partial_text else "no text had arrived"
        text = f"the stream broke ({message}); {kept}" + (f" (request {rid})" if rid else "")
    elif isinstance(exc, (ValueError, TypeError)):
        text = str(exc)
    else:
        text = f"unexpected {type(exc).__name__}: {exc}"
    text = " ".join(text.split())  # one line, whatever the message held
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    if len(text) > MAX_SENTENCE:
        text = text[: MAX_SENTENCE - 1] + "…"
    if not text.endswith((".", "…")):
        text += "."
    return "Error: " + text  # not capitalised: the message may begin with a parameter's name
