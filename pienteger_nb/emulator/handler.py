"""The request handler: routing, auth, faults, pacing, and every response written in one piece."""

from __future__ import annotations

import json
import secrets
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import wire
from .answer import Answer, answer
from .completions import MODELS, model_object, parse_request
from .faults import Fault, StreamPlan, parse_header
from .records import retry_after_seconds
from .wire import APIError

if TYPE_CHECKING:  # pragma: no cover
    from .server import Emulator

ROOT = "/oaiv1"
_DRAIN_LIMIT = 64 << 20  # bodies up to this size are read and dropped so the connection survives a 413


class _Closed(Exception):
    """The connection is gone (the client left, a fault closed it, or the emulator is stopping)."""


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = wire.SERVER
    disable_nagle_algorithm = True  # TCP_NODELAY: with one write per response, nothing waits on ACKs
    emulator: Emulator  # set on the subclass the Emulator makes

    # -- plumbing --------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.emulator._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.emulator._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the emulator logs one line per answer itself (see _answer)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, unknown method) as JSON, like every other answer."""
        if code == 501 and self.command:  # a method we have no do_ for: a 405 from the router
            self._serve()
            return
        self.close_connection = True
        self._rid = wire.request_id()
        self._started = time.perf_counter()
        try:
            self._answer(APIError(code, message or "Bad request", close=True))
        except OSError:
            pass

    # -- one request -----------------------------------------------------------------------

    def _serve(self) -> None:
        if self.emulator._stopping.is_set():  # a connection that slipped past stop(): close it
            self.close_connection = True
            return
        self._rid = wire.request_id()
        self._started = time.perf_counter()
        path, _, query = self.path.partition("?")
        try:
            try:
                raw = self._read_body()
            except APIError as exc:
                self.emulator._record(self, path, query, b"", None)
                self._answer(exc)
                return
            try:
                parsed: Any = json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
                parsed = None
            self.emulator._record(self, path, query, raw, parsed)
            try:
                self._route(path, raw, parsed)
            except APIError as exc:
                self._answer(exc)
        except _Closed:
            self.close_connection = True
        except OSError:  # the client went away mid-answer
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug here must not look like a network fault to the client
            traceback.print_exc(file=sys.stderr)
            try:
                self._answer(APIError(500, f"emulator error: {exc}", type="server_error"))
            except OSError:
                self.close_connection = True

    def _read_body(self) -> bytes:
        limit = self.emulator.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            raise APIError(400, "Content-Length must be a number >= 0", close=True) from None
        if length > limit:
            if length <= _DRAIN_LIMIT:
                left = length
                while left > 0:
                    got = self.rfile.read(min(left, 1 << 16))
                    if not got:
                        raise _Closed
                    left -= len(got)
            else:
                self.close_connection = True
            raise APIError(413, f"Request body of {length} bytes is over the limit of {limit} bytes; "
                           "send a shorter prompt.", code="request_too_large",
                           close=self.close_connection)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                length = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise APIError(400, "Malformed chunked request body", close=True) from None
            if length == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            size += length
            if size > limit:
                self.close_connection = True
                raise APIError(413, f"Request body is over the limit of {limit} bytes; send a shorter "
                               "prompt.", code="request_too_large", close=True)
            parts.append(self.rfile.read(length))
            self.rfile.readline(1024)

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
            raise _Closed
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
            self._send(200, wire.dumps(model_object(model_id)), headers={})
            return
        listing = {"object": "list", "data": [model_object(m) for m in MODELS]}
        self._send(200, wire.dumps(listing), headers={})

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
        body = wire.dumps(ans.body())
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
        self._frame = wire.chunk if chunked else bytes
        self._end = wire.END_CHUNKS if chunked else b""
        if not chunked:
            self.close_connection = True
        write(wire.head(200, {"Content-Type": "text/event-stream; charset=utf-8",
                              "Cache-Control": "no-cache", "x-request-id": self._rid, **headers},
                        length=None, chunked=chunked))
        emu._log(self.command, self.path, 200, self._started)
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
        """Apply the faults due before event ``index``; raises _Closed when the stream must end."""
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
            payload = wire.dumps({"error": {"message": message, "type": str(error.options.get(
                "type", "server_error")), "param": None, "code": error.options.get("code")}})
            write(self._frame(plan.event(payload, index)) + self._end)
            raise _Closed
        if plan.at("cut", index) is not None:
            # Half an event in a well-formed chunk, then the socket closes: the reader gets the
            # partial bytes first and a broken body after.
            event = plan.event(upcoming, index)
            write(self._frame(event[: max(len(event) // 2, 1)]))
            raise _Closed

    # -- faults and pacing -----------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Wait, but give up at once when the emulator stops."""
        if seconds > 0 and self.emulator._stopping.wait(seconds):
            raise _Closed

    def _stall(self, fault: Fault) -> None:
        seconds = fault.options.get("seconds")
        released = self.emulator._stopping.wait(float(seconds) if seconds is not None else None)
        if released:
            raise _Closed

    def _status_fault(self, fault: Fault) -> None:
        status = fault.count("status", 500)
        headers: dict[str, str] = {}
        if "retry_after" in fault.options:
            headers["Retry-After"] = str(fault.options["retry_after"])
        if "retry_after_ms" in fault.options:
            headers["retry-after-ms"] = str(fault.options["retry_after_ms"])
        kind = str(fault.options.get("body", "json"))
        if kind == "html":
            self._send(status, wire.html_error(status), headers=headers, content_type="text/html")
        elif kind == "empty":
            self._send(status, b"", headers=headers, content_type=None)
        else:
            code = fault.options.get("code", "rate_limit_exceeded" if status == 429 else None)
            error_type = "requests" if status == 429 else ("server_error" if status >= 500
                                                           else "invalid_request_error")
            message = str(fault.options.get("message", f"Emulated error {status} (X-Emulator-Fault)."))
            self._send(status, wire.error_body(message, type=str(fault.options.get("type", error_type)),
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
        data = wire.response(status, all_headers, b"" if self.command == "HEAD" else body)
        if cut:
            data = data[: len(data) - len(body) // 2]
            self.close_connection = True
        self.wfile.write(data)
        self.emulator._log(self.command, self.path, status, self._started)
