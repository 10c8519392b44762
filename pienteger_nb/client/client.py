"""Client: the Pienteger completions API over requests, with retries, typed results and errors.

::

    client = Client()                      # settings from pienteger_nb.config
    c = client.complete("Say this is a test", max_tokens=7)
    with client.stream("Once upon a time", max_tokens=200) as s:
        for delta in s:
            print(delta, end="")

Every completion call (ok, error or cancelled) is reported once as a ``CallRecord`` to
``on_call`` (or, when that is None, to the recorder set with ``set_default_recorder``;
``on_call=False`` turns recording off). ``models()``/``model()`` are not recorded, and nor is
a call refused before anything was sent (a bad parameter, no key). The key lives in a
``config.Secret`` and is never logged, shown or put into an error.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self

import requests

from .. import config
from ..errors import APIConnectionError, APIStatusError, ConfigurationError
from ..recorder import Recorder, default_recorder, set_default_recorder
from ..replay import CacheSetting, ReplayStore, parse_cache_setting
from ..spend import SpendPolicy
from ..types import CallRecord, Completion, Estimate, Model
from .body import read_answer
from .estimate import estimate_body
from .gate import CallGate
from .httperrors import map_exception, status_error
from .params import build_body
from .redact import Redactor
from .replayed import ReplayStream, replayed_completion, replayed_record
from .request_loop import RequestLoop
from .results import CallState, completion_from, record_text
from .retry import Pacer
from .stream import Stream
from .transport import new_session, user_agent

log = logging.getLogger("pienteger_nb")

_UNEXPECTED_MODELS = "the service's model answer has an unexpected shape; check PIENTEGER_BASE_URL"


class Client(RequestLoop, CallGate):
    """A connection to the Pienteger API; safe to share across threads (one Session per thread)."""

    def __init__(
        self,
        api_key: str | config.Secret | None = None,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        max_retries: int | None = None,
        source: str = "client",
        on_call: Recorder | Literal[False] | None = None,
        include_usage: bool = True,
        sleep: Callable[[float], Any] = time.sleep,
        pacer: Pacer | None = None,
        max_retry_wait: float = 60.0,
        spend: SpendPolicy | None = None,
        cache: CacheSetting | str | None = None,
        replay: ReplayStore | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._key, _ = config.api_key(api_key)
        self._redact = Redactor(self._key)
        self.base_url: str = config.check_base_url(config.get("base_url", base_url))
        self.default_model: str = config.get("model")
        self.timeout = _seconds("timeout", config.get("timeout", timeout))
        self.connect_timeout = _seconds("connect_timeout", connect_timeout)
        self.deadline = None if deadline is None else _seconds("deadline", deadline)
        self.max_retries = int(config.get("max_retries", max_retries))
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.source = source
        self.on_call = on_call
        self.include_usage = include_usage
        self.pacer = pacer
        self.max_retry_wait = float(max_retry_wait)
        self.spend = spend  # None: the package's default (the ledger's prices and budget)
        # "auto": replay only deterministic requests (temperature 0 or a seed); True: any; False: never
        self.cache: CacheSetting = parse_cache_setting(config.get("cache", cache))
        self.replay = replay  # None: the package's store (the ledger's), read at each call
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()
        # Weak: a thread that ends drops its session (closed when collected), so a client
        # shared with short-lived threads (a form's worker per Submit) does not pile up sockets.
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._models_path: str | None = None  # "/models" or "/getmodels", once one has worked
        self._transport_ok = False
        # Proxies are read from the environment once, here, instead of on every request (requests
        # re-reads them per call: ~0.3 ms of a ~1 ms loopback call); _ready checks them.
        self._proxies: dict[str, str] = requests.utils.get_environ_proxies(self.base_url)

    # -- set-up ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        key = self._key.masked if self._key else "(not set)"
        return f"Client(base_url={self.base_url!r}, api_key={key!r}, source={self.source!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection this client opened (in any thread)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions), weakref.WeakSet()
        for session in sessions:
            session.close()
        self._local = threading.local()

    def with_options(self, **options: Any) -> Client:
        """A new Client like this one with some options changed, e.g. ``with_options(source="magic")``."""
        current: dict[str, Any] = {
            "api_key": self._key, "base_url": self.base_url, "timeout": self.timeout,
            "connect_timeout": self.connect_timeout, "max_retries": self.max_retries, "source": self.source,
            "on_call": self.on_call, "include_usage": self.include_usage, "sleep": self._sleep,
            "pacer": self.pacer, "max_retry_wait": self.max_retry_wait, "spend": self.spend,
            "cache": self.cache, "replay": self.replay, "deadline": self.deadline, "clock": self._clock,
        }
        unknown = set(options) - set(current)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {', '.join(current)}")
        current.update(options)
        return Client(**current)

    def require_key(self) -> config.Secret:
        """The key, or ConfigurationError (how to set one) now."""
        if not self._key:
            raise ConfigurationError(f"no Pienteger API key: {config.KEY_HELP}")
        return self._key

    @property
    def api_key_masked(self) -> str:
        return self._key.masked if self._key else "(not set)"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = new_session(self._proxies)
            self._local.session = session
            with self._lock:
                self._sessions.add(session)
        return session

    def _ready(self) -> config.Secret:
        """The key, once it is known it may be sent to base_url; else ConfigurationError."""
        key = self.require_key()
        if not self._transport_ok:  # the URL, key and proxies never change: check them once
            config.check_key_chars(key)
            config.check_key_transport(self.base_url, requests.utils.select_proxy(self.base_url, self._proxies))
            self._transport_ok = True
        return key

    def _headers(self, *, stream: bool, masked: bool = False) -> dict[str, str]:
        if masked and not self._key:  # a dry run may be shown before any key is set
            shown = "(not set)"
        else:
            key = self._ready()
            shown = key.masked if masked else key.get()
        headers = {
            "X-Api-Key": shown,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": user_agent(),
        }
        if stream:  # a compressed stream cannot be decoded as it arrives when it is not chunked
            headers["Accept-Encoding"] = "identity"
        return headers

    def _recorder(self) -> Recorder | None:
        recorder = default_recorder() if self.on_call is None else self.on_call
        return recorder or None

    def _report(self, record: CallRecord) -> None:
        recorder = self._recorder()
        if recorder is None:
            return
        try:
            recorder(record)
        except Exception as exc:  # noqa: BLE001 - a broken ledger must never break the call
            message = self._redact(str(exc))
            log.warning("recording the call failed: %s: %s", type(exc).__name__, message)

    def _json(self, resp: requests.Response, call: CallState) -> Any:
        try:
            raw = read_answer(resp, deadline=call.deadline, clock=self._clock)
        except requests.RequestException as exc:
            raise map_exception(exc, timeout=self.timeout) from exc
        try:
            return json.loads(raw)
        except ValueError:
            if raw.lstrip()[:1] == b"<":  # an HTML page: most likely the wrong address
                hint = "an HTML page; check PIENTEGER_BASE_URL (it should be the API root, e.g. .../oaiv1)"
            else:
                hint = "a body that is not valid JSON (cut short?); try again"
            raise APIConnectionError(f"the service answered HTTP {resp.status_code} with {hint}") from None

    def _call_state(self, model: str, prompt: Any, *, stream: bool) -> CallState:
        call = CallState(model=model, prompt=prompt, stream=stream, source=self.source, redact=self._redact)
        if self.deadline is not None:
            call.deadline = self._clock() + self.deadline
        return call

    # -- the API ----------------------------------------------------------------------------
    def models(self) -> list[Model]:
        """Every model the service offers (GET /models, falling back to GET /getmodels on 404)."""
        paths = [self._models_path] if self._models_path else ["/models", "/getmodels"]
        for i, path in enumerate(paths):
            call = CallState(model="", prompt=None, stream=False, source=self.source, endpoint="models")
            try:
                resp = self._request("GET", path, body=None, stream=False, call=call)
            except APIStatusError as exc:
                if exc.status_code == 404 and i + 1 < len(paths):
                    continue
                raise
            data = self._json(resp, call)
            self._models_path = path
            items = (data.get("data") if isinstance(data, dict) else data) or []
            if not isinstance(items, list) or not all(isinstance(m, dict) for m in items):
                raise APIConnectionError(_UNEXPECTED_MODELS)
            return [Model.from_dict(m) for m in items]
        raise AssertionError("unreachable")  # pragma: no cover

    def model(self, model_id: str) -> Model:
        """One model (GET /models/{id}); NotFoundError for an unknown id."""
        if not isinstance(model_id, str) or not model_id.strip():
            raise ValueError(f"model id must be a non-empty string, got {model_id!r}")
        call = CallState(model=model_id, prompt=None, stream=False, source=self.source, endpoint="models")
        resp = self._request("GET", f"/models/{requests.utils.quote(model_id, safe='')}", body=None,
                             stream=False, call=call)
        data = self._json(resp, call)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise APIConnectionError(_UNEXPECTED_MODELS)
        return Model.from_dict(data)

    def _prepare(self, prompt: Any, model: str | None, stream: bool, extra_body: Mapping[str, Any] | None,
                 params: dict[str, Any]) -> dict[str, Any]:
        return build_body(prompt, model=model or self.default_model, stream=stream,
                          include_usage=self.include_usage, params=params, extra_body=extra_body)

    def request_preview(self, prompt: str | list[str], *, model: str | None = None, stream: bool = False,
                        extra_body: Mapping[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        """The request a call would send, validated the same way, key masked; sends nothing.

        Without a key it still answers (the key shows as ``(not set)``), so a dry run works first.
        """
        body = self._prepare(prompt, model, stream, extra_body, params)
        return {"method": "POST", "url": self.base_url + "/completions",
                "headers": self._headers(stream=stream, masked=True), "json": body}

    def estimate(self, prompt: str | list[str], *, model: str | None = None,
                 extra_body: Mapping[str, Any] | None = None, **params: Any) -> Estimate:
        """What this call would cost at most (an ``Estimate``), checked like a call; sends nothing.

        Prompt tokens come from this ledger's characters-per-token ratio for the model (4 when
        it has none); completion tokens are ``max_tokens x n x best_of`` per prompt.
        """
        body = self._prepare(prompt, model, False, extra_body, params)
        return estimate_body(body, self.spend_policy)

    def complete(self, prompt: str | list[str], *, model: str | None = None,
                 extra_body: Mapping[str, Any] | None = None, cache: CacheSetting | str | None = None,
                 refresh: bool = False, **params: Any) -> Completion:
        """The whole completion, once it is done. Parameters are checked before anything is sent.

        ``cache`` overrides the client's replay setting for this call; ``refresh=True`` calls
        the service even when an answer is stored, and stores the new one in its place.
        """
        body = self._prepare(prompt, model, False, extra_body, params)
        self._ready()  # refused before sending: not a call, so not recorded
        call = self._call_state(body["model"], prompt, stream=False)
        stored = self._stored(body, call, cache, refresh)
        if stored is not None:  # a replay costs nothing: no reservation
            result = replayed_completion(stored, call)
            if self._recorder() is not None:
                self._report(replayed_record(result, call))
            return result
        policy, ticket = self._reserve(body)
        settled = False

        def report(record: CallRecord) -> None:
            nonlocal settled
            try:
                self._report(record)
            finally:
                settled = True
                self._settle(policy, ticket, record)

        try:
            return self._complete(body, call, report)
        finally:
            if not settled:  # no record was built (recording off): release the reservation all the same
                self._settle(policy, ticket, None)

    def _complete(self, body: dict[str, Any], call: CallState, report: Callable[[CallRecord], None]) -> Completion:
        try:
            resp = self._request("POST", "/completions", body=body, stream=False, call=call)
            data = self._json(resp, call)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):  # an error, sent as a 200
                err = status_error(call.http_status or 200, json.dumps(data).encode(), resp.headers,
                                   redact=self._redact)
                raise APIConnectionError(f"the service answered with an error: {err.message}")
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
                raise APIConnectionError("the service's answer has no choices; check PIENTEGER_BASE_URL")
            try:
                result = completion_from(data, call=call, latency_s=time.perf_counter() - call.started)
            except (AttributeError, TypeError, ValueError):
                raise APIConnectionError(
                    "the service's answer has an unexpected shape (a field of the wrong type); try again"
                ) from None
        except BaseException as exc:
            status = "error" if isinstance(exc, Exception) else "cancelled"
            report(call.record(status, error=exc if isinstance(exc, Exception) else None))
            raise
        if self._recorder() is not None:  # building the record costs a little: only when wanted
            report(call.record("ok", usage=result.usage, text=record_text([c.text for c in result.choices]),
                               finish_reason=result.finish_reason, latency_s=result.latency_s, answer=result))
        return result

    def stream(self, prompt: str | list[str], *, model: str | None = None,
               extra_body: Mapping[str, Any] | None = None, cache: CacheSetting | str | None = None,
               refresh: bool = False, **params: Any) -> Stream:
        """A Stream (use ``with``): iterate it for text as it arrives; ``.completion`` after the end.

        The request is sent (and retried) now, so an error status raises here. A stored answer
        (see ``complete``'s ``cache`` and ``refresh``) streams back as deltas, nothing sent.
        """
        body = self._prepare(prompt, model, True, extra_body, params)
        self._ready()
        call = self._call_state(body["model"], prompt, stream=True)
        stored = self._stored(body, call, cache, refresh)
        if stored is not None:  # a replay costs nothing: no reservation
            return ReplayStream(stored, call=call, report=self._report)
        policy, ticket = self._reserve(body)

        def report(record: CallRecord) -> None:
            # The row first, then the reservation goes: the budget never sees the call as free.
            try:
                self._report(record)
            finally:
                self._settle(policy, ticket, record)

        try:
            resp = self._request("POST", "/completions", body=body, stream=True, call=call)
        except BaseException as exc:
            status = "error" if isinstance(exc, Exception) else "cancelled"
            report(call.record(status, error=exc if isinstance(exc, Exception) else None))
            raise
        return Stream(resp, call=call, report=report, timeout=self.timeout, redact=self._redact,
                      clock=self._clock)


def _seconds(name: str, value: Any) -> float:
    """``value`` as a finite number of seconds > 0, else ValueError naming ``name``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return seconds


__all__ = ["Client", "Stream", "set_default_recorder"]
