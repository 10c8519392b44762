"""One-line cell failures for the magics: what failed, the status, the request id, what to do.

A magic that fails raises ``CellFailure`` (or ``CellInterrupted``): IPython marks the cell
failed (``res.success`` is False, so Run All stops there) and, because the exception renders
its own traceback (``_render_traceback_``), shows that one line instead of a traceback.
"""

from __future__ import annotations

from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BudgetExceededError,
    ConfigurationError,
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
    from .. import config

    key, _ = config.api_key()
    if key and key.get() and key.get() in text:
        text = text.replace(key.get(), key.masked)
    return text


def _first_line(text: str, limit: int = 240) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def with_advice(message: str, advice: str) -> str:
    """The service's message and the client's advice as one sentence, as the screen shows them."""
    message, advice = message.strip(), advice.strip()
    if not advice:
        return message
    if message.endswith("."):
        return f"{message} {advice[0].upper()}{advice[1:]}"
    return f"{message}: {advice}" if message else advice


def describe(exc: BaseException, *, what: str = "completion") -> str:
    """One line for an error: what failed, the status, the request id, what to do."""
    if isinstance(exc, ConfigurationError):
        line = f"Pienteger configuration: {exc}"
    elif isinstance(exc, APIStatusError):
        rid = f", request id {exc.request_id}" if exc.request_id else ""
        said = with_advice(exc.message, exc.advice)
        line = f"Pienteger {what} failed: HTTP {exc.status_code}{rid}: {_first_line(said)}"
    elif isinstance(exc, APITimeoutError) and exc.message.startswith("could not connect"):
        line = (  # the connect timeout is not %pienteger config timeout: no advice to raise it
            f"Pienteger {what} failed: {_first_line(str(exc))}; %pienteger check tests both"
        )
    elif isinstance(exc, APITimeoutError):
        line = (  # the message, without the client's advice for Python callers
            f"Pienteger {what} failed: no answer in time ({_first_line(exc.message)}); "
            "raise the limit with %pienteger config timeout=SECONDS, or try again"
        )
    elif isinstance(exc, APIConnectionError):
        # The client's message says what happened (refused, dropped mid-answer, not JSON):
        # "could not connect" would be wrong for most of them.
        line = (
            f"Pienteger {what} failed: {_first_line(str(exc))}; if it keeps failing, check the "
            "base URL (%pienteger config) and the network; %pienteger check tests both"
        )
    elif isinstance(exc, StreamError):
        rid = f", request id {exc.request_id}" if exc.request_id else ""
        kept = "the text so far is kept above" if exc.partial_text else "no text had arrived"
        line = f"Pienteger stream broke{rid}: {_first_line(exc.message)}; {kept}; run the cell again"
    elif isinstance(exc, BudgetExceededError):
        line = f"Pienteger {what} refused before sending: {_first_line(str(exc), 400)}"
    elif isinstance(exc, ValueError):
        line = f"Pienteger: bad option: {_first_line(str(exc))}"
    else:
        line = f"Pienteger {what} failed: {type(exc).__name__}: {_first_line(str(exc))}"
    return scrub(line)


__all__ = ["CellFailure", "CellInterrupted", "describe", "scrub"]
