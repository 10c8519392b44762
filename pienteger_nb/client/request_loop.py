"""The request loop a Client runs for each call: send, map failures, retry what may be retried.

Retries: connection errors, 408, 409, 429 and 5xx, before the first byte of a body only;
``Retry-After`` (seconds or HTTP date) and ``retry-after-ms`` are honoured, else exponential
backoff with jitter; a wait past ``max_retry_wait`` or the call's deadline fails at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import requests

from ..errors import APIConnectionError, APIStatusError, APITimeoutError, PientegerError
from .body import read_error_body
from .httperrors import frameless_cause, map_exception, status_error
from .redact import Redactor
from .results import CallState
from .retry import Pacer, backoff, describe_wait, is_retryable_status, ratelimit_from, retry_after

log = logging.getLogger("pienteger_nb")


class RequestLoop:
    """``Client``'s HTTP exchange (a base class, so the client's module stays readable)."""

    base_url: str
    timeout: float
    connect_timeout: float
    max_retries: int
    max_retry_wait: float
    deadline: float | None
    pacer: Pacer | None
    _redact: Redactor
    _sleep: Callable[[float], Any]
    _clock: Callable[[], float]

    def _session(self) -> requests.Session:
        raise NotImplementedError

    def _headers(self, *, stream: bool, masked: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def _request(
        self, method: str, path: str, *, body: dict[str, Any] | None, stream: bool, call: CallState
    ) -> requests.Response:
        """A 2xx response (body unread), after any retries; else our error."""
        headers = self._headers(stream=stream)
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        session = self._session()
        redact = self._redact
        while True:
            call.attempts += 1
            attempt = call.attempts
            if self.pacer is not None:
                self.pacer.acquire()
            resp, err = self._send(session, method, url, data, headers, call)
            if err is not None:
                log.debug("%s %s failed: %s (attempt %d)", method, url, type(err).__name__, attempt)
                if self.pacer is not None:
                    self.pacer.observe(None, None, {})
                if isinstance(err, APIConnectionError) and attempt <= self.max_retries:
                    self._wait(backoff(attempt), attempt, type(err).__name__, call)
                    continue
                if attempt > 1:
                    err.message = f"{err.message} (after {attempt} attempts)"
                # Raised here, outside the except block, its cause a frameless copy: the requests
                # exception's frames hold the request's headers (the key), and a verbose traceback
                # shows frames' variables.
                raise err
            assert resp is not None
            status = resp.status_code
            call.http_status = status
            rid = resp.headers.get("x-request-id")
            call.request_id = redact(rid) if rid and redact else rid
            call.ratelimit = ratelimit_from(resp.headers)
            wait = retry_after(resp.headers)
            if self.pacer is not None:
                self.pacer.observe(status, wait, call.ratelimit)
            log.debug("%s %s -> %d (request id %s, attempt %d)", method, url, status, call.request_id,
                      attempt)
            if status < 300:
                return resp
            if status < 400:
                resp.close()
                where = redact(resp.headers.get("location") or "another address")
                raise APIStatusError(
                    f"the service redirected (HTTP {status}) to {where[:200]}",
                    advice="set PIENTEGER_BASE_URL to the final address (the key is never sent to a redirect)",
                    status_code=status, request_id=call.request_id,
                )
            raw = read_error_body(resp)
            err = status_error(status, raw, resp.headers, reason=resp.reason, path=path,
                               retry_after=wait, redact=redact)
            if not is_retryable_status(status, err.code):
                raise err
            if wait is not None and wait > self.max_retry_wait:
                raise self._too_long(err, wait)
            if attempt > self.max_retries:
                if attempt > 1:  # advice, not message: the message stays the service's own words
                    err.advice = f"{err.advice} (after {attempt} attempts)".lstrip()
                raise err
            self._wait(wait if wait is not None else backoff(attempt), attempt, f"HTTP {status}", call)

    def _send(
        self, session: requests.Session, method: str, url: str, data: bytes | None, headers: dict[str, str],
        call: CallState,
    ) -> tuple[requests.Response | None, PientegerError | None]:
        """(response, None), or (None, our error) for a failure to get one; nothing of the failure's
        traceback survives (its frames hold the headers)."""
        read_timeout = self.timeout
        if call.deadline is not None:
            read_timeout = min(read_timeout, max(call.deadline - self._clock(), 1e-3))
        try:
            # stream=True always: the body is read by us, so a failure while reading a
            # successful body is never retried (the service may have done the work).
            # No redirects: requests would resend X-Api-Key to wherever a redirect points.
            resp = session.request(
                method, url, data=data, headers=headers, stream=True, allow_redirects=False,
                timeout=(self.connect_timeout, read_timeout),
            )
        except requests.RequestException as exc:
            err = map_exception(exc, timeout=read_timeout)
            err.__cause__ = frameless_cause(exc, self._redact)
            return None, err
        except KeyboardInterrupt:
            pass  # raised again below, afresh
        except Exception as exc:  # noqa: BLE001 - anything else from deep in the HTTP stack
            return None, APIConnectionError(f"request failed: {type(exc).__name__}")
        else:
            return resp, None
        raise KeyboardInterrupt  # a fresh one, outside the except block: see _request

    def _too_long(self, err: APIStatusError, wait: float) -> APIStatusError:
        err.advice = (
            f"the service asks to wait {describe_wait(wait)} before retrying, more than "
            f"max_retry_wait={self.max_retry_wait:g} s; wait and try again, or raise max_retry_wait"
        )
        return err

    def _wait(self, seconds: float, attempt: int, why: str, call: CallState) -> None:
        if call.deadline is not None and self._clock() + seconds > call.deadline:
            raise APITimeoutError(
                f"the call would pass its deadline of {self.deadline:g} s waiting {seconds:.1f} s to retry "
                f"after {why}", advice="try again later or raise Client(deadline=...)")
        log.debug("retrying after %s in %.3f s (attempt %d of %d)", why, seconds, attempt + 1,
                  self.max_retries + 1)
        self._sleep(seconds)


__all__ = ["RequestLoop"]
