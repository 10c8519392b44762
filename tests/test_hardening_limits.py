"""Bounded memory and time against a careless server (issue 12, items 5-7 and the streamed HTML
page of item 10). Memory is measured as peak RSS in a subprocess; time with an injected clock."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import TEST_KEY
from scripted import http, scripted_fixture  # noqa: F401 - the "scripted" fixture

from pienteger_nb import Client
from pienteger_nb.errors import APIConnectionError, APITimeoutError, InternalServerError, StreamError
from pienteger_nb.types import CallRecord

# The test servers' first step: read the whole request, body included (closing with unread
# bytes would reset the connection and could lose the answer before the client reads it).
_READ_REQUEST = textwrap.dedent('''
    def read_request(conn):
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\\r\\n")
                           if line.lower().startswith(b"content-length:")), b"0"))
        while len(body) < length:
            body += conn.recv(65536)
''')

# A subprocess: a loopback server that sends `size` bytes (1 MiB at a time, never held whole)
# after `head`; the client reads it with the caps lowered; prints the outcome and the peak RSS.
_MEMORY = textwrap.dedent('''
    import json, resource, socket, sys, threading
    import pienteger_nb.client.body as body, pienteger_nb.client.sse as sse
    from pienteger_nb import Client
    body.MAX_ANSWER_BYTES = 16 << 20
    sse.MAX_EVENT_BYTES = 1 << 20
    head, filler, size, stream = sys.argv[1].encode().decode("unicode_escape").encode("latin-1"), \\
        sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4] == "stream"
    listener = socket.create_server(("127.0.0.1", 0))
    sent = [0]
    READ_REQUEST
    def serve():
        conn, _ = listener.accept()
        read_request(conn)
        piece = filler * ((1 << 20) // len(filler))
        try:
            conn.sendall(head)
            while sent[0] < size:
                conn.sendall(piece)
                sent[0] += len(piece)
        except OSError:
            pass
        conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = Client(api_key="pk-mem-0123456789abcdef", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                    max_retries=0, on_call=False)
    try:
        if stream:
            with client.stream("x") as s:
                list(s)
        else:
            client.complete("x")
        outcome = "no error"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    thread.join(30)
    # ru_maxrss survives exec (a child of a big pytest starts with its parent's peak): the
    # kernel's own high-water mark for this process image, VmHWM, is what counts here.
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"outcome": outcome, "peak_mb": hwm / 1024, "sent_mb": sent[0] / (1 << 20),
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
''').replace("READ_REQUEST\n", _READ_REQUEST)

_BIG = 200 << 20  # what the server offers; the caps in the subprocess are 16 MiB and 1 MiB


def _measure(head: str, filler: str, *, stream: bool = False) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "PIENTEGER_USAGE_DB": ":memory:"}
    done = subprocess.run([sys.executable, "-c", _MEMORY, head, filler, str(_BIG), "stream" if stream else "plain"],
                          capture_output=True, text=True, timeout=120, env=env, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize(("head", "filler", "stream", "error", "says"), [
    # a 200 answer with no length (close-delimited), then one with a chunked body
    ("HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\n\\r\\n", '{"a":1}',
     False, "APIConnectionError", "16 MiB"),
    ("HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 209715200\\r\\n\\r\\n", "x",
     False, "APIConnectionError", "16 MiB"),
    ("HTTP/1.1 500 Oops\\r\\nContent-Type: text/plain\\r\\nConnection: close\\r\\n\\r\\n", "oops ",
     False, "InternalServerError", "HTTP 500"),
    # one SSE event that never ends
    ("HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nConnection: close\\r\\n\\r\\ndata: ", "x",
     True, "StreamError", "1 MiB"),
])
def test_memory_stays_bounded_while_refusing_a_huge_body(head, filler, stream, error, says) -> None:
    result = _measure(head, filler, stream=stream)
    outcome = str(result["outcome"])
    assert outcome.startswith(error + ":") and says in outcome, outcome
    assert "\n" not in outcome
    # Read whole, 200 MiB would take at least that; the cap keeps the peak near the interpreter's own.
    assert float(result["peak_mb"]) < 120, result


_BOMB = textwrap.dedent('''
    import json, socket, threading, zlib
    import pienteger_nb.client.body as body
    from pienteger_nb import Client
    body.MAX_ANSWER_BYTES = 16 << 20
    packer, zeros = zlib.compressobj(1, zlib.DEFLATED, 31), b"\\0" * (1 << 20)
    packed = b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()  # 256 MiB, gzipped
    del zeros
    listener = socket.create_server(("127.0.0.1", 0))
    READ_REQUEST
    def serve():
        conn, _ = listener.accept()
        read_request(conn)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Encoding: gzip\\r\\n"
                         b"Content-Length: %d\\r\\n\\r\\n" % len(packed) + packed)
        except OSError:
            pass
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    client = Client(api_key="pk-mem-0123456789abcdef", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                    max_retries=0, on_call=False)
    try:
        client.complete("x")
        outcome = "no error"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"outcome": outcome, "peak_mb": hwm / 1024}))
''').replace("READ_REQUEST\n", _READ_REQUEST)


def test_a_gzip_bomb_is_refused_by_its_decoded_size() -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "PIENTEGER_USAGE_DB": ":memory:"}
    done = subprocess.run([sys.executable, "-c", _BOMB], capture_output=True, text=True, timeout=120, env=env,
                          check=True)
    result = json.loads(done.stdout)
    assert str(result["outcome"]).startswith("APIConnectionError:") and "16 MiB" in str(result["outcome"])
    assert float(result["peak_mb"]) < 120, result


class Clock:
    """A clock that moves ``step`` seconds every time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def endless(first: bytes, then: Callable[[int], bytes]) -> Callable[[socket.socket], None]:
    """An answer for raw_server: ``first``, then ``then(i)`` for i = 0, 1, ... until the client hangs up."""
    def answer(conn: socket.socket) -> None:
        try:
            conn.sendall(first)
            i = 0
            while True:
                conn.sendall(then(i))
                i += 1
        except OSError:
            return
    return answer


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
HI = b'data: {"choices": [{"text": "hi", "index": 0}]}\n\n'


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.mark.parametrize("then", [
    lambda i: b": keep-alive\n\n",  # comments only
    lambda i: b"d" if i == 0 else b"a",  # a byte now and then, of a line that never ends
])
def test_a_stream_without_data_times_out_and_keeps_its_text(raw_server, records, then) -> None:
    url = raw_server(endless(SSE_HEAD + HI, then))
    clock = Clock(step=1.0)
    client = Client(api_key=TEST_KEY, base_url=url, timeout=30, max_retries=0, clock=clock, on_call=records.append)
    with client.stream("x") as s, pytest.raises(APITimeoutError) as info:
        list(s)
    assert "no data for 30 s" in str(info.value) and "comments do not count" in str(info.value)
    assert s.text == "hi" and records[-1].status == "error" and records[-1].text == "hi"
    assert 30 <= clock.now <= 40  # it gave up as soon as the clock said so


def test_deadline_bounds_a_stream_that_never_ends(raw_server, records) -> None:
    url = raw_server(endless(SSE_HEAD, lambda i: HI))
    clock = Clock(step=0.5)
    client = Client(api_key=TEST_KEY, base_url=url, deadline=20, max_retries=0, clock=clock, on_call=records.append)
    with client.stream("x") as s, pytest.raises(APITimeoutError) as info:
        list(s)
    assert "deadline" in str(info.value)
    assert s.text.startswith("hihi") and records[-1].text == s.text and records[-1].status == "error"


def test_deadline_refuses_a_retry_wait_past_it(scripted, records) -> None:
    server = scripted([http("503 Busy", b'{"error": {"message": "busy"}}', headers={"Retry-After": "30"})])
    sleeps: list[float] = []
    client = Client(api_key=TEST_KEY, base_url=server.url, deadline=10, max_retries=3, max_retry_wait=100,
                    sleep=sleeps.append, clock=Clock(step=0.1), on_call=records.append)
    with pytest.raises(APITimeoutError) as info:
        client.complete("x")
    assert "deadline of 10 s" in str(info.value) and sleeps == [] and len(server.received) == 1
    assert records[-1].status == "error" and records[-1].http_status == 503


def test_a_gzip_stream_with_a_length_is_read(scripted) -> None:
    events = HI + b'data: {"choices": [{"text": " there", "index": 0, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    packed = gzip.compress(events)
    server = scripted([http("200 OK", packed, ctype="text/event-stream", headers={"Content-Encoding": "gzip"})])
    with Client(api_key=TEST_KEY, base_url=server.url, max_retries=0).stream("x") as s:
        assert "".join(s) == "hi there"
    assert s.completion is not None and s.completion.finish_reason == "stop"
    assert b"\r\nAccept-Encoding: identity\r\n" in server.received[0]


def test_a_streamed_html_page_says_so(scripted) -> None:
    page = b"<!DOCTYPE html><html><body>Welcome to nginx</body></html>"
    server = scripted([http("200 OK", page, ctype="text/html")])
    client = Client(api_key=TEST_KEY, base_url=server.url, max_retries=0)
    with client.stream("x") as s, pytest.raises(StreamError) as info:
        list(s)
    assert "HTML page" in str(info.value) and "PIENTEGER_BASE_URL" in str(info.value)


def test_error_body_is_read_only_to_its_cap(scripted) -> None:
    from pienteger_nb.client import body

    server = scripted([http("500 Oops", b"x" * (3 << 20), ctype="text/plain")])
    limit = body.MAX_ERROR_BYTES
    with pytest.raises(InternalServerError) as info:
        Client(api_key=TEST_KEY, base_url=server.url, max_retries=0).complete("x")
    assert limit == 1 << 20 and "HTTP 500" in str(info.value) and len(str(info.value)) < 400


def test_an_answer_declared_too_long_is_refused_unread(scripted, monkeypatch) -> None:
    from pienteger_nb.client import body

    monkeypatch.setattr(body, "MAX_ANSWER_BYTES", 1000)
    server = scripted([http("200 OK", b'{"choices": [{"text": "' + b"y" * 2000 + b'"}]}')])
    with pytest.raises(APIConnectionError) as info:
        Client(api_key=TEST_KEY, base_url=server.url, max_retries=0).complete("x")
    assert "larger than 1,000 bytes" in str(info.value)


_ = (threading, Iterator)
