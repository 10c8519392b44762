"""The exception tree of pienteger_nb.

::

    PientegerError
    ├── ConfigurationError          missing key, key over plain http, bad base URL
    ├── APIConnectionError          could not connect, connection dropped
    │   └── APITimeoutError
    ├── APIStatusError              .status_code .request_id .message .code .type
    │   ├── BadRequestError 400     ├── AuthenticationError 401   ├── PermissionDeniedError 403
    │   ├── NotFoundError 404       ├── RateLimitError 429        └── InternalServerError >= 500
    ├── StreamError                 a stream that broke or ended without [DONE]; .partial_text
    └── BudgetExceededError         refused before sending: the call could pass the budget

Exceptions carry their context (status, request id, the error body's message/code/type),
never headers or the API key.
"""

from __future__ import annotations


class PientegerError(Exception):
    """Root of every error pienteger_nb raises.

    ``message`` says what happened; ``advice`` (may be empty) is what a Python caller can do
    about it. ``str()`` gives both; the magics and the form show ``message`` with advice of their own.
    """

    def __init__(self, message: str = "", *, advice: str = ""):
        super().__init__(message)
        self.message = message
        self.advice = advice

    def __str__(self) -> str:
        return f"{self.message}; {self.advice}" if self.advice else self.message


class ConfigurationError(PientegerError):
    """A setting is missing or unsafe (no key, key over plain http, bad base URL)."""


class APIConnectionError(PientegerError):
    """The service could not be reached, or the connection dropped."""


class APITimeoutError(APIConnectionError):
    """The service did not answer within the timeout."""


class StreamError(PientegerError):
    """A stream broke or ended without ``[DONE]``; ``partial_text`` is what had arrived."""

    def __init__(self, message: str, *, partial_text: str = "", request_id: str | None = None,
                 advice: str = ""):
        super().__init__(message, advice=advice)
        self.partial_text = partial_text
        self.request_id = request_id


class BudgetExceededError(PientegerError):
    """A call (or batch) refused before anything was sent: its worst case could pass the budget.

    ``spent`` and ``limit`` are in the budget's unit (USD or tokens), ``worst_case`` is what this
    call could cost at most; ``unit`` is "usd" or "tokens".
    """

    def __init__(self, message: str, *, spent: float = 0.0, limit: float = 0.0, worst_case: float | None = None,
                 unit: str = "usd", advice: str = ""):
        super().__init__(message, advice=advice)
        self.spent = spent
        self.limit = limit
        self.worst_case = worst_case
        self.unit = unit


class APIStatusError(PientegerError):
    """The service answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        advice: str = "",
    ):
        # ``message`` stays the service's own words, so code can match on it; what to do is ``advice``.
        super().__init__(message, advice=advice)
        self.status_code = status_code
        self.request_id = request_id
        self.code = code
        self.type = type
        self.param = param
        self.retry_after = retry_after  # seconds the service asked us to wait, when it said

    def __str__(self) -> str:
        rid = f", request id {self.request_id}" if self.request_id else ""
        said = f"{self.message} (HTTP {self.status_code}{rid})"
        return f"{said}; {self.advice}" if self.advice else said


class BadRequestError(APIStatusError):
    """400: a parameter was refused (``param`` names it)."""


class AuthenticationError(APIStatusError):
    """401: the key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: unknown model or path."""


class RateLimitError(APIStatusError):
    """429: rate limit hit, or quota used up (``code == "insufficient_quota"``)."""


class InternalServerError(APIStatusError):
    """5xx: trouble on the service's side."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific APIStatusError subclass for an HTTP status."""
    if status_code >= 500:
        return InternalServerError
    return _BY_STATUS.get(status_code, APIStatusError)


__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "PientegerError",
    "RateLimitError",
    "StreamError",
    "status_error_class",
]
