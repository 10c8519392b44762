"""Key hygiene against a careless or hostile server (issue 12, items 1-4).

Every test runs the client against a real loopback server and then looks for the key in all
that a user or a log could see: the exception (str, repr, every attribute), the result, the
captured output and logs, and the bytes of the ledger file.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import string
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY
from scripted import http, scripted_fixture  # noqa: F401 - the "scripted" fixture

from pienteger_nb import Client, config, usage
from pienteger_nb.errors import ConfigurationError, PientegerError

# Every printable ASCII character (a key with others is refused before sending), the ones that
# JSON, HTML and URLs escape first.
ALPHABET = string.ascii_letters + string.digits + string.punctuation


def sse_body(events: list[str]) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


def encodings(key: str, rng: random.Random) -> dict[str, str]:
    """JSON string literals (quotes included) that all decode to a message quoting ``key``."""
    plain = json.dumps(f"bad key {key} here")
    mixed = "".join(f"\\u{ord(c):04x}" if rng.random() < 0.5 else json.dumps(c)[1:-1] for c in key)
    return {
        "json": plain,
        "slash": plain.replace("/", "\\/"),
        "unicode": '"bad key ' + "".join(f"\\u{ord(c):04X}" for c in key) + '"',
        "mixed": f'"bad key {mixed}"',
    }


def keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = ["pk-" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(12, 40))) for _ in range(count)]
    # the characters that each encoding changes, all in one key
    out.append('pk-/"\\<>&\'%+ =:;/slash"quote\\back')
    return [k.strip() for k in out]


def everything_shown(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    parts = [str(exc), repr(exc), *(repr(v) for v in vars(exc).values())]
    if exc.__cause__ is not None:
        parts.append(everything_shown(exc.__cause__))
    return "\n".join(parts)


def ledger_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("usage.sqlite*")))


def assert_nowhere(key: str, *texts: str | bytes) -> None:
    for text in texts:
        haystack = text if isinstance(text, str) else text.decode("utf-8", "replace")
        assert key not in haystack, f"the key leaked: ...{haystack[max(0, haystack.find(key) - 80):][:200]!r}"


def test_keys_echoed_in_every_encoding_appear_nowhere(scripted, tmp_path, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(12)
    calls = 0
    for key in keys(8, seed=12):
        answers: list[bytes] = []
        streamed: set[int] = set()
        for literal in encodings(key, rng).values():
            error = f'{{"error": {{"message": {literal}, "type": {literal}, "code": {literal}, "param": {literal}}}}}'
            streamed.add(len(answers) + 2)
            answers += [
                http("400 Bad Request", error.encode(), headers={"x-request-id": key}),
                http("200 OK", error.encode(), headers={"x-request-id": key}),
                http("200 OK", sse_body(['{"choices": [{"text": "hi", "index": 0}]}', error]),
                     ctype="text/event-stream", headers={"x-request-id": f"req-{key}"}),
            ]
        answers += [
            http("502 Bad Gateway", f"<html><body>key={key} &amp; {key.replace('&', '&amp;')}</body></html>".encode(),
                 ctype="text/html"),
            http("500 Oops", f"upstream said {key}{key}".encode(), ctype="text/plain"),
            http("307 Temporary Redirect", b"", headers={"Location": f"https://evil.example/?k={key}"}),
            http("200 OK", json.dumps({"id": key, "model": key, "choices": [{"text": "fine", "index": 0,
                 "finish_reason": key}]}).encode(), headers={"x-request-id": key}),
        ]
        echoed = {"id": key, "model": key, "choices": [{"text": "ok", "index": 0, "finish_reason": key}]}
        streamed.add(len(answers))
        answers.append(http("200 OK", sse_body([json.dumps(echoed), "[DONE]"]), ctype="text/event-stream",
                            headers={"x-request-id": key}))
        server = scripted(answers)
        client = Client(api_key=key, base_url=server.url, max_retries=0)
        shown: list[str] = []
        for i in range(len(answers)):
            calls += 1
            try:
                if i in streamed:
                    with client.stream("x") as s:
                        shown += ["".join(s), repr(s.completion), repr(s)]
                else:
                    done = client.complete("x")
                    shown += [repr(done), str(done.request_id)]
            except PientegerError as exc:
                shown.append(everything_shown(exc))
        client.close()
        server.close()
        assert len(server.received) == len(answers)
        assert all(key.encode() in request for request in server.received)  # it was sent, in the header
        out = capsys.readouterr()
        assert_nowhere(key, *shown, out.out, out.err, caplog.text, ledger_bytes(tmp_path))
        assert any("****" in text for text in shown)
    frame = usage()
    assert len(frame) == calls  # one row per call, none lost to masking
    assert (frame["status"] == "ok").sum() == 18


@pytest.mark.parametrize("url", [
    "http://evil.example\\.localhost:{port}/oaiv1",  # urlsplit: a .localhost name; urllib3: evil.example
    "http://127.0.0.1:{port}\\@evil.example/oaiv1",
    "http://evil.localhost:{port}/oaiv1",  # resolved through DNS: not trusted by its spelling
    "http://127.0.0.1:{port} /oaiv1",
    "http://127.0.0.1:{port}/oa iv1",
    "http://[::1:{port}/oaiv1",
    "http://127.0.0.1%2F:{port}/oaiv1",
])
def test_urls_read_differently_never_carry_the_key(url: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        address = url.format(port=listener.getsockname()[1])
        with pytest.raises(ConfigurationError) as info:
            Client(api_key=TEST_KEY, base_url=address, max_retries=0).complete("x")
        message = str(info.value)
        assert "\n" not in message and ("PIENTEGER" in message or "https" in message)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing was sent anywhere
    finally:
        listener.close()


def test_loopback_literals_and_localhost_still_work(emulator) -> None:
    port = emulator.url.split(":")[2].split("/")[0]
    for host in ("127.0.0.1", "localhost", "LOCALHOST"):
        assert Client(api_key=TEST_KEY, base_url=f"http://{host}:{port}/oaiv1").complete("x", max_tokens=2).text
    assert config.is_loopback("[::1]") and config.is_loopback("127.8.9.1")
    assert not config.is_loopback("x.localhost") and not config.is_loopback("127.0.0.1.nip.io")


def test_config_refuses_a_bad_base_url_in_one_line() -> None:
    for bad in ("http://[::1", "http://a b/", "ftp://x/", "http://x/\\y"):
        with pytest.raises(ConfigurationError) as info:
            config.set_kernel("base_url", bad)
        assert "\n" not in str(info.value)


def test_debug_verbose_traceback_never_shows_the_key(ip: Any, monkeypatch) -> None:
    from IPython.utils.capture import capture_output

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: a connection error, raised from deep inside requests
    monkeypatch.setenv("PIENTEGER_API_KEY", TEST_KEY)
    monkeypatch.setenv("PIENTEGER_BASE_URL", f"http://127.0.0.1:{port}/oaiv1")
    ip.run_cell("%xmode Verbose", silent=True)
    try:
        ip.run_cell("%pienteger config debug=true max_retries=0", silent=True)
        for cell in ("%%pienteger --no-stream\nhello", "%%pienteger\nhello", "%pienteger check"):
            with capture_output() as cap:
                res = ip.run_cell(cell, silent=True)
            text = cap.stdout + cap.stderr
            assert not res.success
            assert "APIConnectionError" in text and "ConnectionError" in text  # a traceback, and its cause
            assert_nowhere(TEST_KEY, text)
    finally:
        ip.run_cell("%xmode Context", silent=True)


def test_a_proxy_read_differently_never_carries_the_key(emulator, monkeypatch) -> None:
    # urlsplit reads the host after the "@" (loopback); urllib3, which connects, reads evil.example.
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://evil.example\\@127.0.0.1:3128")
    with pytest.raises(ConfigurationError) as info:
        Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0).complete("x")
    assert "proxy evil.example" in str(info.value) and "NO_PROXY" in str(info.value)
    assert emulator.requests == []
