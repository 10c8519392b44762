"""One-line cell failures for the magics: what failed, the status, the request id, what to do.

A magic that fails raises ``CellFailure`` (or ``CellInterrupted``): IPython marks the cell
failed (``res.success`` is False, so Run All stops there) and, because the exception renders
its own traceback (``_render_traceback_``), shows that one line instead of a traceback.
"""

from __future__ import annotations

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PientegerError,
    RateLimitError,
    StreamError,
)


class CellFailure(Exception):
    """A magic failed; IPython shows ``str(self)`` as the cell's whole error output."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


class CellInterrupted(KeyboardInterrupt):
    """The user interrupted a streaming magic; the partial text was kept on screen."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def scrub(text: str) -> str:
    """The text with the current key (if it appears at all) replaced by its masked form."""
    from . import config

    key, _ = config.api_key()
    if key and key.get() and key.get() in text:
        text = text.replace(key.get(), key.masked)
    return text


def _first_line(text: str, limit: int = 240) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _advice(exc: PientegerError) -> str:
    if isinstance(exc, AuthenticationError):
        return "check the key: %pienteger login, or set PIENTEGER_API_KEY"
    if isinstance(exc, PermissionDeniedError):
        return "this key may not do that; try another model (%pienteger models)"
    if isinstance(exc, NotFoundError):
        return "unknown model or path: see %pienteger models, and the base URL in %pienteger config"
    if isinstance(exc, RateLimitError):
        if exc.code == "insufficient_quota":
            return "the quota is used up: check your Pienteger plan; retrying will not help"
        wait = f"wait {exc.retry_after:g} s and " if exc.retry_after else "wait a little and "
        return f"rate limited even after retries: {wait}run the cell again"
    if isinstance(exc, BadRequestError):
        param = f" (parameter {exc.param})" if exc.param else ""
        return f"the service refused a parameter{param}: fix the option and run again"
    if isinstance(exc, InternalServerError):
        return "trouble on the service's side even after retries: try again later"
    return "see %pienteger help"


def _with_advice(message: str, advice: str) -> str:
    """The message, then the advice unless the message already says what to do."""
    low = message.lower()
    if any(hint in low for hint in ("try again", "%pienteger login", "pienteger_api_key", "did you mean")):
        return message
    return f"{message}; {advice}"


def describe(exc: BaseException, *, what: str = "completion") -> str:
    """One line for an error: what failed, the status, the request id, what to do."""
    if isinstance(exc, ConfigurationError):
        line = f"Pienteger configuration: {exc}"
    elif isinstance(exc, APIStatusError):
        rid = f", request id {exc.request_id}" if exc.request_id else ""
        line = f"Pienteger {what} failed: HTTP {exc.status_code}{rid}: " + _with_advice(
            _first_line(exc.message), _advice(exc)
        )
    elif isinstance(exc, APITimeoutError):
        line = (
            f"Pienteger {what} failed: no answer in time ({_first_line(str(exc))}); "
            "raise the limit with %pienteger config timeout=SECONDS, or try again"
        )
    elif isinstance(exc, APIConnectionError):
        line = (
            f"Pienteger {what} failed: could not connect ({_first_line(str(exc))}); check the "
            "base URL (%pienteger config) and the network; %pienteger check tests both"
        )
    elif isinstance(exc, StreamError):
        rid = f", request id {exc.request_id}" if exc.request_id else ""
        message = _first_line(str(exc)).replace(
            "the text so far is in .partial_text", "the text so far is kept above"
        )
        line = f"Pienteger stream broke{rid}: " + _with_advice(message, "run the cell again")
    elif isinstance(exc, ValueError):
        line = f"Pienteger: bad option: {_first_line(str(exc))}"
    else:
        line = f"Pienteger {what} failed: {type(exc).__name__}: {_first_line(str(exc))}"
    return scrub(line)


__all__ = ["CellFailure", "CellInterrupted", "describe", "scrub"]
