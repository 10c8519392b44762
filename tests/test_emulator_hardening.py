"""The emulator as a long-running team server: hostile bytes, bad fault options, its imports.

Everything goes through real loopback sockets; malformed requests are written as raw bytes.
Nothing here sleeps to synchronise: a reply (or the server closing the socket) is the signal.
Idle connections and their limits are in test_emulator_connections.py, which shares the
raw-socket helpers below.
"""

from __future__ import annotations

import ast
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import TEST_KEY

from pienteger_nb.emulator import Emulator

EMULATOR_DIR = Path(__file__).resolve().parents[1] / "pienteger_nb" / "emulator"
JSON_HEAD = b"Content-Type: application/json\r\nX-Api-Key: " + TEST_KEY.encode() + b"\r\n"


# -- raw-socket helpers --------------------------------------------------------------------------


def connect(emu: Emulator) -> socket.socket:
    return socket.create_connection(("127.0.0.1", emu.port), timeout=10)


def read_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after the reply counts as closed)."""
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def exchange(emu: Emulator, data: bytes, *, end_input: bool = True) -> bytes:
    """Send ``data`` on a fresh connection and read the reply until the server closes.

    With ``end_input=False`` the client keeps its side open: a server that waits for more input
    never answers, and the socket timeout fails the test.
    """
    with connect(emu) as sock:
        try:
            sock.sendall(data)
            if end_input:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before taking it all: read what it said
            pass
        return read_reply(sock)


def parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and body of the first response in ``reply``."""
    head, sep, rest = reply.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {reply[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:length]


def error_of(body: bytes) -> dict[str, object]:
    """The error object of a JSON error body, which must be strict UTF-8 JSON."""
    doc = json.loads(body.decode("utf-8"))  # strict: a lone surrogate encoded anyway fails here
    return doc["error"]


def chunked_post(size_line: bytes, rest: bytes = b"") -> bytes:
    return (b"POST /oaiv1/completions HTTP/1.1\r\nHost: x\r\n" + JSON_HEAD
            + b"Transfer-Encoding: chunked\r\n\r\n" + size_line + rest)


@pytest.fixture
def session(emulator: Emulator) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["X-Api-Key"] = TEST_KEY
        yield s


def assert_no_traceback(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return err


# -- 1. chunked request bodies never read past max_body ------------------------------------------


@pytest.mark.parametrize("size_line", [
    b"-5\r\n", b"-0\r\n", b"-ffff\r\n", b"0x10\r\n", b"1_0\r\n", b"+5\r\n", b"zz\r\n", b"\r\n",
    b" \r\n", b"5 5\r\n", b"5\x00\r\n", b"\xff\r\n", b"a" * 2000 + b"\r\n",
])
def test_malformed_chunk_size_is_400_at_once(emulator, capfd, size_line):
    emulator.max_body = 1000
    # The client keeps sending and never ends its input: the answer must come without EOF,
    # after reading no more than the bad size line (the filler stays unread).
    reply = exchange(emulator, chunked_post(size_line, b"x" * 5000), end_input=False)
    status, headers, body = parse(reply)
    assert status == 400, reply[:300]
    assert "chunk" in str(error_of(body)["message"]).lower()
    assert headers["connection"] == "close"
    assert emulator.requests[-1].raw_body == b""
    assert assert_no_traceback(capfd) == ""


def test_a_chunk_larger_than_max_body_is_413_before_it_is_read(emulator):
    emulator.max_body = 1000
    reply = exchange(emulator, chunked_post(b"ffffffffffff\r\n", b"x" * 5000), end_input=False)
    status, _, body = parse(reply)
    assert status == 413 and error_of(body)["code"] == "request_too_large"


def test_chunks_adding_up_past_max_body_are_413(emulator):
    emulator.max_body = 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"x" * 300) for _ in range(4))
    reply = exchange(emulator, chunked_post(chunks), end_input=False)
    assert parse(reply)[0] == 413


def test_chunk_framing_cannot_stand_in_for_a_body(emulator):
    # One-byte chunks with 1000-byte extensions: tiny data, endless framing.
    emulator.max_body = 1000
    chunk = b"1;" + b"e" * 1000 + b"\r\nx\r\n"
    reply = exchange(emulator, chunked_post(chunk * 200), end_input=False)
    status, _, body = parse(reply)
    assert status == 400 and "chunk" in str(error_of(body)["message"]).lower()


def test_chunk_data_must_end_with_crlf(emulator):
    reply = exchange(emulator, chunked_post(b"2\r\n{}XX0\r\n\r\n"), end_input=False)
    assert parse(reply)[0] == 400


def test_a_body_cut_short_mid_chunk_is_refused_not_parsed(emulator):
    # The client ends its input half-way through a chunk (it may still read the answer).
    status, _, body = parse(exchange(emulator, chunked_post(b"20\r\n{\"model\":")))
    assert status == 400 and "chunk" in str(error_of(body)["message"]).lower()
    assert emulator.requests[-1].raw_body == b""


def test_well_formed_chunks_with_extensions_and_trailers_are_read(emulator):
    body = b'{"model": "text-ada-001", "max_tokens": 2}'
    data = (b"%x;name=value\r\n%s\r\n" % (10, body[:10]) + b"%X\r\n%s\r\n" % (len(body) - 10, body[10:])
            + b"0\r\nX-Trailer: yes\r\n\r\n")
    reply = exchange(emulator, chunked_post(data))
    assert parse(reply)[0] == 200
    assert emulator.requests[-1].body == {"model": "text-ada-001", "max_tokens": 2}


@pytest.mark.parametrize("length", [b"1_0", b"+10", b"0x0a", b"10, 11", b"-0"])
def test_content_length_must_be_plain_digits(emulator, length):
    reply = exchange(emulator, b"POST /oaiv1/completions HTTP/1.1\r\nHost: x\r\n" + JSON_HEAD
                     + b"Content-Length: " + length + b"\r\n\r\n" + b'{"model":1}')
    status, _, body = parse(reply)
    assert status == 400 and "Content-Length" in str(error_of(body)["message"])


# -- 2. malformed request lines: the right status, JSON, no traceback ------------------------------


MALFORMED = {
    "garbage": (b"THIS IS NOT HTTP\r\n\r\n", 400),
    "one word": (b"GET\r\n\r\n", 400),
    "bad version": (b"GET / HTTP/1.x\r\n\r\n", 400),
    "http 9.9": (b"GET / HTTP/9.9\r\n\r\n", 505),
    "http2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "tls hello": (bytes.fromhex("160301002a010000260303") + b"\x00" * 38 + b"\r\n\r\n", 400),
    "nul bytes": (b"\x00\x01\x02\r\n\r\n", 400),
    "escape codes": (b"\x1b[2J\x1b[31mGET / HTTP/1.1 x\r\n\r\n", 400),
    "nbsp in path": (b"GET /oaiv1/models/\xed\xa0\x80 HTTP/1.1\r\n\r\n", 400),
    "long line": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    "long header": (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    "post over http 0.9": (b"POST /oaiv1/completions\r\n", 400),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_request_line_gets_its_status_as_json_without_a_traceback(emulator, capfd, name):
    data, expected = MALFORMED[name]
    status, headers, body = parse(exchange(emulator, data))
    assert status == expected
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert error_of(body)["message"]
    assert assert_no_traceback(capfd) == ""


def test_malformed_requests_are_logged_in_one_printable_line_each():
    lines: list[str] = []
    with Emulator(TEST_KEY, log=lines.append) as emu:
        for data, _ in MALFORMED.values():
            exchange(emu, data)
    assert len(lines) == len(MALFORMED)
    for line in lines:
        assert "\n" not in line and line.isprintable() and len(line) < 300, line
    assert any(" 400 " in line for line in lines) and any(" 414 " in line for line in lines)


# -- 3. lone surrogates: a clean 4xx that encodes ---------------------------------------------------


SURROGATE_BODIES = {
    "model": (b'{"model": "\\ud800"}', "model"),
    "model low": (b'{"model": "text-\\udc00"}', "model"),
    "prompt": (b'{"model": "text-ada-001", "prompt": "hi \\ud800", "echo": true}', "prompt"),
    "prompt stream": (b'{"model": "text-ada-001", "prompt": "\\ud800", "echo": true, "stream": true}', "prompt"),
    "prompt list": (b'{"model": "text-ada-001", "prompt": ["ok", "\\udfff"]}', "prompt"),
    "suffix": (b'{"model": "text-ada-001", "suffix": "\\ud83d"}', "suffix"),
    "stop": (b'{"model": "text-ada-001", "stop": ["\\ud800"]}', "stop"),
    "logit_bias key": (b'{"model": "text-ada-001", "logit_bias": {"\\ud800": 1}}', "logit_bias"),
    "unknown field": (b'{"model": "text-ada-001", "tag": {"deep": ["\\ud800"]}}', "tag"),
}


@pytest.mark.parametrize("name", SURROGATE_BODIES)
def test_lone_surrogate_in_a_string_is_a_clean_400_naming_the_field(session, emulator, capfd, name):
    data, param = SURROGATE_BODIES[name]
    resp = session.post(emulator.url + "/completions", data=data,
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400, resp.content[:300]
    assert resp.headers["Content-Type"] == "application/json"
    error = error_of(resp.content)
    assert error["param"] == param and error["code"] == "invalid_value"
    assert "surrogate" in str(error["message"])
    assert assert_no_traceback(capfd) == ""
    # The connection is fine afterwards.
    assert session.post(emulator.url + "/completions", json={"model": "text-ada-001", "max_tokens": 1},
                        timeout=10).status_code == 200


def test_a_surrogate_in_a_field_name_is_named_printably(session, emulator):
    resp = session.post(emulator.url + "/completions", data=b'{"model": "text-ada-001", "x\\ud800": 1}',
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert error_of(resp.content)["param"] == "x\\ud800"


def test_surrogates_in_a_model_path_are_a_clean_404(session, emulator):
    resp = session.get(emulator.url + "/models/%ED%A0%80", timeout=10)
    assert resp.status_code == 404 and error_of(resp.content)["code"] == "model_not_found"


def test_surrogate_pairs_are_ordinary_text(session, emulator):
    resp = session.post(emulator.url + "/completions", timeout=10, headers={"Content-Type": "application/json"},
                        data=b'{"model": "text-ada-001", "prompt": "\\ud83d\\ude00", "echo": true, "max_tokens": 1}')
    assert resp.status_code == 200 and resp.json()["choices"][0]["text"].startswith("\U0001f600")


# -- 4. fault options are checked: a 400 naming the option ----------------------------------------


BAD_FAULTS = [
    ("cut;after=inf", "after"), ("cut;after=nan", "after"), ("cut;after=-inf", "after"),
    ("cut;after=-1", "after"), ("cut;after=1e400", "after"), ("cut;after=" + "9" * 5000, "after"),
    ("cut;after=1.5", "after"), ("cut;after=10000000000", "after"),
    ("stall;seconds=inf", "seconds"), ("stall;seconds=nan", "seconds"), ("stall;seconds=1e308", "seconds"),
    ("stall;seconds=-1", "seconds"), ("stall;after=2;seconds=never", "seconds"),
    ("error_event;after=nan", "after"), ("malformed;after=inf", "after"),
    ("status;status=nan", "status"), ("status;status=500.5", "status"), ("status;status=inf", "status"),
    ("status;retry_after=inf", "retry_after"), ("status;retry_after=-3", "retry_after"),
    ("status;retry_after=soon", "retry_after"), ("status;retry_after_ms=nan", "retry_after_ms"),
    ("status;retry_after_ms=-1", "retry_after_ms"), ("status;body=xml", "body"),
    ("cut;afterr=1", "afterr"), ("drop;colour=red", "colour"), ("no_done;after=nan", "after"),
]


@pytest.mark.parametrize(("spec", "option"), BAD_FAULTS)
def test_bad_fault_option_in_the_header_is_400_naming_it(session, emulator, capfd, spec, option):
    for stream in (True, False):
        resp = session.post(emulator.url + "/completions", headers={"X-Emulator-Fault": spec}, timeout=10,
                            json={"model": "text-ada-001", "max_tokens": 3, "stream": stream})
        assert resp.status_code == 400, resp.content[:300]
        error = error_of(resp.content)
        assert error["param"] == "X-Emulator-Fault"
        assert f"option {option}" in str(error["message"]) and len(str(error["message"])) < 400
    assert assert_no_traceback(capfd) == ""


@pytest.mark.parametrize(("kind", "options", "option"), [
    ("cut", {"after": float("inf")}, "after"), ("cut", {"after": float("nan")}, "after"),
    ("cut", {"after": -1}, "after"), ("cut", {"after": True}, "after"),
    ("stall", {"seconds": float("inf")}, "seconds"), ("stall", {"seconds": 10**400}, "seconds"),
    ("status", {"retry_after": "1\r\nSet-Cookie: x=1"}, "retry_after"),
    ("status", {"retry_after_ms": float("nan")}, "retry_after_ms"), ("status", {"status": 429.5}, "status"),
    ("status", {"colour": "red"}, "colour"),
])
def test_bad_fault_option_in_python_is_a_value_error_naming_it(emulator, kind, options, option):
    with pytest.raises(ValueError, match=f"option {option}"):
        emulator.queue_fault(kind, **options)


@pytest.mark.parametrize("times", [0, -1, 1.5, float("inf"), True])
def test_fault_times_must_be_a_whole_number_from_1(emulator, times):
    with pytest.raises(ValueError, match="times"):
        emulator.queue_fault("drop", times=times)


def test_fault_options_at_their_limits_still_work(session, emulator):
    def post(spec: str, **body: object) -> requests.Response:
        # stream=True: the status alone is checked; a cut body is not read.
        with session.post(emulator.url + "/completions", headers={"X-Emulator-Fault": spec}, timeout=10,
                          json={"model": "text-ada-001", "max_tokens": 3, **body}, stream=True) as resp:
            return resp

    assert post("cut;after=0", stream=True).status_code == 200
    assert post("malformed;after=1000000000", stream=True).status_code == 200  # fires before [DONE]
    assert post("stall;seconds=0").status_code == 200
    assert post("stall;after=1;seconds=0.0", stream=True).status_code == 200
    resp = post("status;status=429;retry_after=0;retry_after_ms=0")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "0"
    resp = post("status;status=503;retry_after=Wed, 21 Oct 2015 07:28:00 GMT")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert post("status;status=500.0").status_code == 500


# -- 5. the emulator's imports: no cycles (TYPE_CHECKING included), standard library only -------------


def emulator_imports() -> dict[str, set[str]]:
    """module -> the emulator modules it imports anywhere in its source, and any outside name."""
    graph: dict[str, set[str]] = {}
    for path in sorted(EMULATOR_DIR.glob("*.py")):
        name = path.stem
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    edges.add("!" + (node.module or ""))
                elif node.level == 1 and node.module:
                    edges.add(node.module.split(".")[0])
                elif node.level == 1:
                    # `from . import x` runs the package's __init__ first, then x.
                    edges.add("__init__")
                    edges.update(alias.name for alias in node.names)
                else:
                    edges.add("!" + "." * node.level + (node.module or ""))
            elif isinstance(node, ast.Import):
                edges.update("!" + alias.name for alias in node.names)
        graph[name] = edges
    return graph


def test_emulator_modules_import_each_other_without_cycles():
    graph = emulator_imports()
    inner = {name: {e for e in edges if not e.startswith("!")} for name, edges in graph.items()}
    # __init__ may import everything; a module that reaches __init__ back is a cycle like any other.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(inner.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(inner):
        if name not in state:
            visit(name)


def test_emulator_imports_the_standard_library_only():
    for name, edges in emulator_imports().items():
        for edge in (e[1:] for e in edges if e.startswith("!")):
            top = edge.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, f"{name}.py imports {edge}"
