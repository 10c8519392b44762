"""The request handler: routing, auth, faults, pacing, and every response written in one piece.

One ``EmulatorHandler`` lives as long as its connection, but serves one request per
``serve_one()`` call: between requests the connection waits in ``connections.Connections``
without a thread. What it needs of the emulator is the ``Host`` protocol below, so this module
never imports ``server.py`` (which imports it).
"""

from __future__ import annotations

import io
import json
import secrets
import select
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import unquote

from .answer import Answer, answer
from .body import read_body
from .completions import MODELS, model_object, parse_request
from .faults import Fault, FaultQueue, StreamPlan, parse_header
from .records import RateWindow, retry_after_seconds
from .wire import (
    END_CHUNKS,
    SERVER,
    APIError,
    Closed,
    chunk,
    dumps,
    error_body,
    head,
    html_error,
    printable,
    request_id,
    response,
)

ROOT = "/oaiv1"


class Host(Protocol):
    """What a handler reads and calls on the emulator serving it (``server.Emulator``)."""

    api_key: str
    latency: float
    tokens_per_second: float | None
    rpm: int | None
    getmodels_only: bool
    natural_end: bool
    max_body: int
    _faults: FaultQueue
    _window: RateWindow
    _stopping: threading.Event

    def _record(self, *, method: str, path: str, query: str, headers: list[tuple[str, str]], raw: bytes,
                parsed: Any, peer: str) -> None: ...

    def _log(self, method: str, path: str, status: int, started: float) -> None: ...


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER
    disable_nagle_algorithm = True  # TCP_NODELAY: with one write per response, nothing waits on ACKs

    def __init__(self, sock: socket.socket, address: Any, emulator: Host, *, timeout: float) -> None:
        # Not BaseRequestHandler.__init__, which would serve the whole connection in this thread.
        self.request = sock
        self.client_address = address
        self.emulator = emulator
        self._timeout = timeout
        self.setup()
        # Bounds every read and write: a client silent this long mid-request is gone.
        sock.settimeout(timeout)

    # -- the connection, for connections.Connections ---------------------------------------

    def serve_one(self) -> bool:
        """Serve the next request; True when the connection stays open for another."""
        self.close_connection = True
        self.handle_one_request()
        return not self.close_connection

    def pending(self, wait: float) -> bool:
        """True when bytes of the next request arrive within ``wait`` seconds (or are buffered already)."""
        rfile = self.rfile
        if not isinstance(rfile, io.BufferedReader):
            return False
        sock = self.connection
        try:
            sock.setblocking(False)  # peek must not block: empty means nothing has come yet
            if rfile.peek(1):
                return True
            if wait <= 0:
                return False
            if hasattr(select, "poll"):  # select() fails on descriptors past FD_SETSIZE (1024)
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                return bool(poller.poll(wait * 1000))
            return bool(select.select([sock], [], [], wait)[0])
        except (OSError, ValueError):
            return False  # parked, the selector reports the error and the next serve_one() ends it
        finally:
            try:
                sock.settimeout(self._timeout)
            except OSError:
                pass

    def close(self) -> None:
        """Flush and close the connection."""
        try:
            self.finish()
        except (OSError, ValueError):
            pass
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.connection.close()

    # -- plumbing --------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the emulator logs one line per answer itself (see _send)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def parse_request(self) -> bool:
        self.path = ""  # a request line too broken to name a path must not log the last request's
        return super().parse_request()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, unknown method) as JSON, like every other answer."""
        if code == 501 and self.command:  # a method we have no do_ for: a 405 from the router
            self._serve()
            return
        self.close_connection = True
        self._begin()
        try:
            self._answer(APIError(code, message or "Bad request", close=True))
        except OSError:
            pass

    # -- one request -----------------------------------------------------------------------

    def _begin(self) -> None:
        self._rid = request_id()
        self._started = time.perf_counter()
        self._head_sent = False  # once True, an error can no longer be answered, only cut off

    def _serve(self) -> None:
        if self.emulator._stopping.is_set():  # a connection that slipped past stop(): close it
            self.close_connection = True
            return
        self._begin()
        path, _, query = self.path.partition("?")
        try:
            try:
                raw = read_body(self.rfile, self.headers, self.emulator.max_body)
            except APIError as exc:
                self._record(path, query, b"", None)
                self._answer(exc)
                return
            try:
                parsed: Any = json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
                parsed = None
            self._record(path, query, raw, parsed)
            try:
                self._route(path, raw, parsed)
            except APIError as exc:
                self._answer(exc)
        except (Closed, OSError):  # OSError: the client went away (or timed out) mid-request
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug here must not look like a network fault to the client
            traceback.print_exc(file=sys.stderr)
            if self._head_sent:  # a response is under way: a second one would corrupt it
                self.close_connection = True
                return
            try:
                self._answer(APIError(500, f"emulator error: {printable(str(exc))}", type="server_error"))
            except OSError:
                self.close_connection = True

    def _record(self, path: str, query: str, raw: bytes, parsed: Any) -> None:
        host, port = self.client_address[:2]
        self.emulator._record(method=self.command, path=path, query=query, headers=list(self.headers.items()),
                              raw=raw, parsed=parsed, peer=f"{host}:{port}")

    def _route(self, path: str, raw: bytes, parsed: Any) -> None:
        emu = self.emulator
        sub = path[len(ROOT):] if path.startswith(ROOT + "/") else None
        if sub in ("/models", "/getmodels") or (sub or "").startswith("/models/"):
            allowed = "GET"
        elif sub == "/completions":
            allowed = "POST"
        else:
            raise APIError(404, f"Unknown path {path}: the API lives under {ROOT} "
                           "(/models, /getmodels, /models/{id}, /completions).", code="unknown_url")
        if self.command != allowed:
            raise APIError(405, f"Method {self.command} is not allowed on {path}; use {allowed}.",
                           code="method_not_allowed", headers={"Allow": allowed})
        key = self.headers.get("X-Api-Key")
        if not key or not secrets.compare_digest(key.encode(), emu.api_key.encode()):
            raise APIError(401, "Incorrect or missing API key: send your key in the X-Api-Key header.",
                           code="invalid_api_key")
        faults = parse_header(self.headers.get("X-Emulator-Fault", ""))
        if sub == "/completions":
            queued = emu._faults.take()
            if queued is not None:
                faults.append(queued)
        self._pause(emu.latency)
        kinds = {f.kind: f for f in faults}
        if "drop" in kinds:
            raise Closed
        if "stall" in kinds and (self.command == "GET" or not (isinstance(parsed, dict)
                                                                and parsed.get("stream") is True)):
            self._stall(kinds["stall"])
        if "status" in kinds:
            self._status_fault(kinds["status"])
            return
        if allowed == "GET":
            self._models(sub or "")
            return
        self._completions(raw, parsed, faults)

    # -- endpoints -------------------------------------------------------------------------

    def _models(self, sub: str) -> None:
        if sub == "/models" and self.emulator.getmodels_only:
            raise APIError(404, "Not found: this service lists models at /getmodels.", code="unknown_url")
        if sub.startswith("/models/"):
            model_id = unquote(sub[len("/models/"):])
            if model_id not in MODELS:
                raise APIError(404, f"The model `{model_id}` does not exist", code="model_not_found",
                               param="model")
            self._send(200, dumps(model_object(model_id)), headers={})
            return
        listing = {"object": "list", "data": [model_object(m) for m in MODELS]}
        self._send(200, dumps(listing), headers={})

    def _completions(self, raw: bytes, parsed: Any, faults: list[Fault]) -> None:
        emu = self.emulator
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise APIError(415, f"Content-Type must be application/json, got {ctype or 'nothing'}.",
                           code="unsupported_media_type")
        if parsed is None:
            raise APIError(400, "We could not parse the JSON body of your request: send a JSON object "
                           "with Content-Type: application/json.", code="invalid_json")
        req = parse_request(parsed)
        wait, headers = emu._window.admit(rpm=emu.rpm, tokens=req.max_tokens * len(req.prompts) * req.n)
        if wait is not None:
            raise APIError(429, f"Rate limit reached: {emu.rpm} requests per minute. Try again in "
                           f"{retry_after_seconds(wait)}s.", type="requests", code="rate_limit_exceeded",
                           headers={**headers, "Retry-After": retry_after_seconds(wait)})
        ans = answer(req, natural_end=emu.natural_end)
        if req.stream:
            self._stream(ans, req.include_usage, faults, headers)
            return
        tps = emu.tokens_per_second
        if tps:
            self._pause(sum(len(c.pieces) for c in ans.choices) / tps)
        body = dumps(ans.body())
        kinds = {f.kind for f in faults}
        if "malformed" in kinds:
            self._send(200, body[: len(body) // 2], headers=headers)
        elif "cut" in kinds:
            self._send(200, body, headers=headers, cut=True)
        else:
            self._send(200, body, headers=headers)

    def _stream(self, ans: Answer, include_usage: bool, faults: list[Fault], headers: dict[str, str]) -> None:
        emu = self.emulator
        total = ans.events + (1 if include_usage else 0)
        plan = StreamPlan(faults, events=total)
        write = self.wfile.write
        # HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
        chunked = self.request_version != "HTTP/1.0"
        self._frame = chunk if chunked else bytes
        self._end = END_CHUNKS if chunked else b""
        if not chunked:
            self.close_connection = True
        self._head_sent = True
        write(head(200, {"Content-Type": "text/event-stream; charset=utf-8",
                              "Cache-Control": "no-cache", "x-request-id": self._rid, **headers},
                        length=None, chunked=chunked))
        self._log(200)
        tps = emu.tokens_per_second
        start = time.perf_counter()
        index = 0
        for payload in ans.chunks(include_usage=include_usage):
            self._stream_breaks(plan, index, payload)
            if plan.keepalive:
                write(self._frame(plan.comment()))
            write(self._frame(plan.event(payload, index)))
            index += 1
            if tps:
                self._pause(start + index / tps - time.perf_counter())
        self._stream_breaks(plan, index, b"[DONE]")
        tail = self._frame(plan.comment()) if plan.keepalive else b""
        if plan.done:
            tail += self._frame(plan.event(b"[DONE]", index))
        write(tail + self._end)

    def _stream_breaks(self, plan: StreamPlan, index: int, upcoming: bytes) -> None:
        """Apply the faults due before event ``index``; raises Closed when the stream must end."""
        write = self.wfile.write
        stall = plan.at("stall", index)
        if stall is not None:
            self._stall(stall)
        if plan.at("malformed", index) is not None:
            write(self._frame(plan.event(b'{"id": "cmpl-broken", "choices": [{"text": ', index)))
        error = plan.at("error_event", index)
        if error is not None:
            message = str(error.options.get("message", "The server had an error while processing your "
                                            "request. Sorry about that!"))
            payload = dumps({"error": {"message": message, "type": str(error.options.get(
                "type", "server_error")), "param": None, "code": error.options.get("code")}})
            write(self._frame(plan.event(payload, index)) + self._end)
            raise Closed
        if plan.at("cut", index) is not None:
            # Half an event in a well-formed chunk, then the socket closes: the reader gets the
            # partial bytes first and a broken body after.
            event = plan.event(upcoming, index)
            write(self._frame(event[: max(len(event) // 2, 1)]))
            raise Closed

    # -- faults and pacing -----------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Wait, but give up at once when the emulator stops (an infinite wait lasts until then)."""
        if seconds > 0 and self.emulator._stopping.wait(min(seconds, threading.TIMEOUT_MAX)):
            raise Closed

    def _stall(self, fault: Fault) -> None:
        seconds = fault.options.get("seconds")
        released = self.emulator._stopping.wait(float(seconds) if seconds is not None else None)
        if released:
            raise Closed

    def _status_fault(self, fault: Fault) -> None:
        status = fault.count("status", 500)
        headers: dict[str, str] = {}
        if "retry_after" in fault.options:
            headers["Retry-After"] = str(fault.options["retry_after"])
        if "retry_after_ms" in fault.options:
            headers["retry-after-ms"] = str(fault.options["retry_after_ms"])
        kind = str(fault.options.get("body", "json"))
        if kind == "html":
            self._send(status, html_error(status), headers=headers, content_type="text/html")
        elif kind == "empty":
            self._send(status, b"", headers=headers, content_type=None)
        else:
            code = fault.options.get("code", "rate_limit_exceeded" if status == 429 else None)
            error_type = "requests" if status == 429 else ("server_error" if status >= 500
                                                           else "invalid_request_error")
            message = str(fault.options.get("message", f"Emulated error {status} (X-Emulator-Fault)."))
            self._send(status, error_body(message, type=str(fault.options.get("type", error_type)),
                                               param=None, code=None if code is None else str(code)),
                       headers=headers)

    # -- writing ---------------------------------------------------------------------------

    def _answer(self, exc: APIError) -> None:
        if exc.close:
            self.close_connection = True
        self._send(exc.status, exc.body(), headers=exc.headers)

    def _send(self, status: int, body: bytes, *, headers: dict[str, str],
              content_type: str | None = "application/json", cut: bool = False) -> None:
        """The whole response in one write."""
        all_headers = {"x-request-id": self._rid}
        if "x-ratelimit-remaining-requests" not in headers:
            all_headers.update(self.emulator._window.headers(rpm=self.emulator.rpm))
        all_headers.update(headers)
        if content_type:
            all_headers["Content-Type"] = content_type
        if self.close_connection or cut:
            all_headers["Connection"] = "close"
        data = response(status, all_headers, b"" if self.command == "HEAD" else body)
        if cut:
            data = data[: len(data) - len(body) // 2]
            self.close_connection = True
        self._head_sent = True
        self.wfile.write(data)
        self._log(status)

    def _log(self, status: int) -> None:
        if self.command:
            method, target = self.command, self.path
        else:  # no request line worth the name: show what came, escaped (it may hold terminal escapes)
            method, target = "-", repr(getattr(self, "requestline", "") or "")
        self.emulator._log(printable(method, 20), printable(target, 200), status, self._started)
