"""The one boundary where HTTP failures become pienteger_nb errors.

``map_exception`` turns any ``requests`` (or, for raw reads, ``urllib3``) exception into one of
ours, most specific first; callers ``raise mapped from exc`` so the cause is kept.
``status_error`` turns an error response (JSON, HTML or empty) into the right
``APIStatusError`` subclass with a message that says what to do.
"""

from __future__ import annotations

import json
from typing import Any

import requests
import urllib3.exceptions as u3

from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    PientegerError,
    status_error_class,
)
from .redact import NO_KEY, Redactor
from .retry import describe_wait


def _is_read_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout mid-body as ConnectionError(ReadTimeoutError(...))."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (u3.ReadTimeoutError, TimeoutError)):
            return True
        stack.extend(item.args)
        stack.append(item.__cause__)
        stack.append(item.__context__)
        stack.append(getattr(item, "reason", None))
    return False


def map_exception(exc: BaseException, *, timeout: float | None = None) -> PientegerError:
    """Our error for a requests/urllib3 exception (never raises; unknown ones become APIConnectionError)."""
    if isinstance(exc, PientegerError):
        return exc
    within = f" within {timeout:g} s" if timeout else ""
    # ConnectTimeout is both a ConnectionError and a Timeout: check it first.
    if isinstance(exc, (requests.exceptions.ConnectTimeout, u3.ConnectTimeoutError)):
        return APITimeoutError(f"could not connect to the service{within}; check the base URL and network")
    if isinstance(exc, (requests.exceptions.Timeout, u3.TimeoutError)) or _is_read_timeout(exc):
        return APITimeoutError(f"the service sent nothing{within} (read timeout)",
                               advice="try again or raise Client(timeout=...)")
    if isinstance(exc, (requests.exceptions.SSLError, u3.SSLError)):
        return APIConnectionError(f"TLS/SSL failure talking to the service: {type(exc).__name__}")
    if isinstance(exc, (requests.exceptions.ProxyError, u3.ProxyError)):
        return APIConnectionError("could not get through the HTTP proxy; check HTTPS_PROXY / NO_PROXY")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, u3.ProtocolError)):
        return APIConnectionError("the connection dropped while the answer was being read; try again")
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return APIConnectionError("the answer could not be decompressed; try again")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.URLRequired,
                        requests.exceptions.InvalidProxyURL, u3.LocationParseError)):
        return ConfigurationError("the request URL is not valid; check PIENTEGER_BASE_URL")
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return ConfigurationError("a request header is not valid; check the API key for stray characters")
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return APIConnectionError("too many redirects; check PIENTEGER_BASE_URL")
    if isinstance(exc, (requests.exceptions.ConnectionError, u3.NewConnectionError, ConnectionError)):
        return APIConnectionError("could not reach the service, or it closed the connection; try again")
    if isinstance(exc, requests.exceptions.HTTPError):
        resp = exc.response
        if resp is not None:
            return status_error(resp.status_code, resp.content or b"", resp.headers, reason=resp.reason)
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return APIConnectionError("the service answered with something that is not JSON; check the base URL")
    return APIConnectionError(f"request failed: {type(exc).__name__}")


def frameless_cause(exc: BaseException, redact: Redactor = NO_KEY) -> BaseException | None:
    """A copy of ``exc`` to keep as our error's cause: its class and (masked) message only.

    The original's traceback frames hold the request, headers and key included, and a verbose
    traceback (``%xmode Verbose``) prints frames' variables. A header error quotes the header's
    value: it gets no cause at all."""
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return None
    message = redact(str(exc))
    try:
        return type(exc)(message)
    except Exception:  # noqa: BLE001 - an exception class that takes other arguments
        return Exception(f"{type(exc).__name__}: {message}")


def _hint(status: int, code: str | None, path: str, retry_after: float | None, param: str | None) -> str:
    if code == "model_not_found":
        return "check the model name (%pienteger models or client.models() lists them)"
    if status == 401:
        return "check PIENTEGER_API_KEY or run %pienteger login"
    if status == 403:
        return "this key is not allowed to do that; check its permissions"
    if status == 404:
        root = "check PIENTEGER_BASE_URL (it should be the API root, e.g. .../oaiv1)"
        if "completions" not in path and "/models/" not in path:
            return root
        if param == "model":
            return "check the model name (%pienteger models or client.models() lists them)"
        if code:  # the service named another reason (e.g. unknown_url): not the model
            return root
        # No code (a bare or HTML 404): an unknown model and a wrong address look alike.
        return f"check the model name (%pienteger models or client.models() lists them), and {root}"
    if status == 429:
        if code == "insufficient_quota":
            return "your quota is used up; check your plan (retrying will not help)"
        wait = f"wait {describe_wait(retry_after)}" if retry_after is not None else "wait a moment"
        return f"slow down or {wait} and try again"
    if status in (408, 409):
        return "try again"
    if status >= 500:
        return "trouble on the service's side; try again later"
    if status == 400:
        return f"fix {param} and try again" if param else "fix the parameter and try again"
    return ""


def status_error(
    status: int,
    body: bytes,
    headers: Any,
    *,
    reason: str | None = None,
    path: str = "",
    retry_after: float | None = None,
    redact: Redactor = NO_KEY,
) -> APIStatusError:
    """The APIStatusError subclass for an error answer: the service's message verbatim, what to do in ``advice``.

    The key is masked everywhere: in every decoded JSON field (so escapes such as ``\\/`` or
    ``\\uXXXX`` cannot hide it), in other text before it is cut short, and in the request id."""
    error: dict[str, Any] = {}
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if redact:
        text = redact(text)
    if isinstance(parsed, dict):
        inner = redact.value(parsed.get("error", parsed))
        error = inner if isinstance(inner, dict) else {"message": str(inner)}
    message = redact(str(error.get("message") or "").strip())
    if not message:
        what = f"HTTP {status} {reason or ''}".strip()
        if not text:
            message = f"{what} with an empty body"
        elif text.lstrip()[:1] == "<":
            message = f"{what} (an HTML page, probably from a proxy in front of the service)"
        else:
            message = f"{what}: {text[:200]}"
    code = error.get("code")
    param = error.get("param")
    hint = _hint(status, str(code) if code else None, path, retry_after, str(param) if param else None)
    cls = status_error_class(status)
    return cls(
        message,
        status_code=status,
        request_id=redact.optional(headers.get("x-request-id")) if headers is not None else None,
        code=str(code) if code is not None else None,
        type=str(error["type"]) if error.get("type") is not None else None,
        param=str(param) if param is not None else None,
        retry_after=retry_after,
        advice=hint,
    )


__all__ = ["frameless_cause", "map_exception", "status_error"]
