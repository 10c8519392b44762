"""Every fault the emulator acts out, read as raw bytes off the wire with plain requests."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from conftest import TEST_KEY

from pienteger_nb.emulator import Emulator, Fault

BODY = {"model": "text-davinci-003", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0}


@pytest.fixture
def session(emulator):
    emulator.natural_end = False  # every stream here has exactly max_tokens token events
    with requests.Session() as s:
        s.headers["X-Api-Key"] = TEST_KEY
        yield s


def post(session, emulator, fault: str | None = None, **body):
    headers = {"X-Emulator-Fault": fault} if fault else {}
    return session.post(emulator.url + "/completions", json={**BODY, **body}, headers=headers,
                        stream=bool(body.get("stream")), timeout=10)


def read_all(resp: requests.Response) -> bytes:
    return resp.raw.read()


def read_until_broken(resp: requests.Response) -> bytes:
    """The bytes that arrived before the body broke off (it must break)."""
    got = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for piece in resp.iter_content(chunk_size=None):
            got += piece
    return got


def blocks(raw: bytes, end: str = "\n") -> list[str]:
    return [b for b in raw.decode().split(end * 2) if b]


def payloads(raw: bytes) -> list[str]:
    return [b.removeprefix("data: ") for b in blocks(raw) if b.startswith("data: ")]


def plain_text(session, emulator) -> str:
    return post(session, emulator).json()["choices"][0]["text"]


# -- status faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 408, 409, 429, 500, 502, 503, 504])
def test_status_fault_by_header_answers_json(session, emulator, status):
    resp = post(session, emulator, f"status;status={status}")
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert resp.headers["x-request-id"].startswith("req_")
    assert post(session, emulator).status_code == 200


def test_status_fault_html_and_empty_bodies(session, emulator):
    resp = post(session, emulator, "status;status=502;body=html")
    assert resp.status_code == 502 and resp.headers["Content-Type"] == "text/html"
    assert resp.text.startswith("<html>") and "502 Bad Gateway" in resp.text
    resp = post(session, emulator, "status;status=503;body=empty")
    assert resp.status_code == 503 and resp.content == b"" and "Content-Type" not in resp.headers


def test_429_with_retry_after_seconds_and_ms_and_a_code(session, emulator):
    resp = post(session, emulator, "status;status=429;retry_after=2;retry_after_ms=1500;code=insufficient_quota")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2" and resp.headers["retry-after-ms"] == "1500"
    assert resp.json()["error"]["code"] == "insufficient_quota"


def test_retry_after_as_an_http_date_in_the_header(session, emulator):
    # The date holds a comma, which also separates faults: only a known kind starts a new one.
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    resp = post(session, emulator, f"status;status=503;retry_after={date}, keepalive")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == date


def test_status_fault_applies_to_a_stream_before_any_event(session, emulator):
    resp = post(session, emulator, "status;status=500", stream=True)
    assert resp.status_code == 500 and resp.json()["error"]["type"] == "server_error"


def test_queued_faults_serve_times_requests_in_order(session, emulator):
    emulator.queue_fault("status", status=500, times=2)
    emulator.queue_fault(Fault("status", {"status": 429, "retry_after": 1}))
    codes = [post(session, emulator).status_code for _ in range(4)]
    assert codes == [500, 500, 429, 200]


def test_queued_faults_wait_for_a_completions_request(session, emulator):
    emulator.queue_fault("status", status=503)
    assert session.get(emulator.url + "/models", timeout=10).status_code == 200
    assert post(session, emulator).status_code == 503
    emulator.queue_fault("status", status=503)
    emulator.reset()
    assert post(session, emulator).status_code == 200


def test_fault_objects_check_themselves():
    with pytest.raises(ValueError, match="times must be a whole number >= 1"):
        Fault("drop", times=0)
    with pytest.raises(ValueError, match="after must be a whole number"):
        Fault("cut", {"after": "soon"})


def test_unknown_fault_is_refused_in_python_and_in_the_header(session, emulator):
    with pytest.raises(ValueError, match="unknown fault kind 'explode'"):
        emulator.queue_fault("explode")
    resp = post(session, emulator, "explode")
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "X-Emulator-Fault"
    resp = post(session, emulator, "cut;after=soon", stream=True)
    assert resp.status_code == 400 and "after must be a whole number" in resp.json()["error"]["message"]
    resp = post(session, emulator, "status;503")
    assert resp.status_code == 400 and "name=value" in resp.json()["error"]["message"]


# -- connection faults ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_drop_closes_without_an_answer(session, emulator, stream):
    with pytest.raises(requests.ConnectionError):
        post(session, emulator, "drop", stream=stream)
    assert post(session, emulator).status_code == 200


def test_cut_closes_mid_event(session, emulator):
    resp = post(session, emulator, "cut;after=2", stream=True)
    raw = read_until_broken(resp)
    complete, _, partial = raw.decode().rpartition("\n\n")
    assert len(payloads(complete.encode() + b"\n\n")) == 2
    assert partial.startswith("data: {") and not partial.endswith("\n")
    with pytest.raises(ValueError):
        json.loads(partial.removeprefix("data: "))
    assert post(session, emulator).status_code == 200


def test_cut_of_a_plain_answer_sends_part_of_the_body(session, emulator):
    emulator.queue_fault("cut")
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        post(session, emulator).json()


def test_stall_waits_until_stop_and_leaving_the_with_block_releases_it():
    first_event = threading.Event()
    outcome: list = []

    def read() -> None:
        resp = requests.post(emu.url + "/completions", json={**BODY, "stream": True}, stream=True,
                             headers={"X-Api-Key": TEST_KEY, "X-Emulator-Fault": "stall;after=1"}, timeout=30)
        got = b""
        try:
            for piece in resp.iter_content(chunk_size=None):
                got += piece
                first_event.set()
            outcome.append(("ended", got))
        except requests.exceptions.RequestException:
            outcome.append(("broken", got))

    with Emulator(TEST_KEY, natural_end=False) as emu:
        worker = threading.Thread(target=read)
        worker.start()
        assert first_event.wait(10)
        assert worker.is_alive()  # stalled after one event
    worker.join(10)
    assert not worker.is_alive()
    (kind, got), = outcome
    assert kind == "broken" and len(payloads(got)) == 1 and b"[DONE]" not in got


def test_stall_with_seconds_then_carries_on(session, emulator):
    raw = read_all(post(session, emulator, "stall;after=2;seconds=0.01", stream=True))
    assert payloads(raw)[-1] == "[DONE]" and len(payloads(raw)) == 7


def test_stall_of_a_plain_call_is_released_by_stop():
    emu = Emulator(TEST_KEY).start()
    emu.queue_fault("stall")
    outcome: list = []

    def call() -> None:
        try:
            requests.post(emu.url + "/completions", json=BODY, headers={"X-Api-Key": TEST_KEY}, timeout=30)
            outcome.append("answered")
        except requests.ConnectionError:
            outcome.append("closed")

    worker = threading.Thread(target=call)
    worker.start()
    assert emu.wait_for_requests(1)
    emu.stop()
    worker.join(10)
    assert not worker.is_alive() and outcome == ["closed"]


# -- stream content faults --------------------------------------------------------------------


def test_malformed_event_then_the_stream_carries_on(session, emulator):
    found = payloads(read_all(post(session, emulator, "malformed;after=3", stream=True)))
    assert len(found) == 8 and found[-1] == "[DONE]"
    with pytest.raises(ValueError):
        json.loads(found[3])
    assert all(json.loads(p)["choices"] for i, p in enumerate(found[:-1]) if i != 3)


def test_malformed_plain_answer_is_not_json(session, emulator):
    resp = post(session, emulator, "malformed")
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()


def test_error_event_mid_stream_then_the_stream_ends(session, emulator):
    found = payloads(read_all(post(session, emulator, "error_event;after=2;message=overloaded", stream=True)))
    assert len(found) == 3
    assert json.loads(found[2]) == {"error": {"message": "overloaded", "type": "server_error", "param": None,
                                              "code": None}}
    assert all("choices" in json.loads(p) for p in found[:2])


def test_no_done_ends_the_body_cleanly_without_done(session, emulator):
    found = payloads(read_all(post(session, emulator, "no_done", stream=True)))
    assert len(found) == 6 and "[DONE]" not in found
    assert "".join(json.loads(p)["choices"][0]["text"] for p in found) == plain_text(session, emulator)


def test_fault_after_past_the_end_fires_before_done(session, emulator):
    found = payloads(read_all(post(session, emulator, "malformed;after=999", stream=True)))
    assert len(found) == 8 and found[-1] == "[DONE]" and not found[-2].startswith("{\"id\":\"cmpl-")


@pytest.mark.parametrize(("fault", "end"), [("crlf", "\r\n"), ("cr", "\r")])
def test_line_end_faults(session, emulator, fault, end):
    raw = read_all(post(session, emulator, fault, stream=True)).decode()
    if end == "\r\n":
        assert raw.count("\r\n") == raw.count("\n")
    else:
        assert "\n" not in raw
    found = [b.removeprefix("data: ") for b in raw.split(end * 2) if b]
    assert found[-1] == "[DONE]" and len(found) == 7
    assert "".join(json.loads(p)["choices"][0]["text"] for p in found[:-1]) == plain_text(session, emulator)


def test_keepalive_comments_between_events(session, emulator):
    found = blocks(read_all(post(session, emulator, "keepalive", stream=True)))
    assert found.count(": keep-alive") == 7
    assert [b for b in found if not b.startswith(":")][-1] == "data: [DONE]"


def test_fields_add_sse_lines_and_split_data(session, emulator):
    raw = read_all(post(session, emulator, "fields", stream=True))
    texts = []
    for block in blocks(raw):
        lines = block.split("\n")
        assert lines[0] == "event: completion" and lines[1].startswith("id: ") and lines[2] == "retry: 3000"
        data = "\n".join(line.removeprefix("data: ") for line in lines[3:])
        if data == "[DONE]":
            continue
        assert len(lines) > 4  # the payload was split over several data: lines
        texts.append(json.loads(data)["choices"][0]["text"])
    assert "".join(texts) == plain_text(session, emulator)


def test_faults_combine_in_one_header(session, emulator):
    raw = read_all(post(session, emulator, "crlf, keepalive, no_done", stream=True)).decode()
    assert ": keep-alive\r\n\r\n" in raw and "[DONE]" not in raw and raw.count("\r\n") == raw.count("\n")


def test_the_fault_header_is_recorded(session, emulator):
    post(session, emulator, "status;status=500")
    assert emulator.requests[-1].headers["X-Emulator-Fault"] == "status;status=500"


def test_http_1_0_stream_runs_until_close(emulator):
    import socket

    body = json.dumps({**BODY, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
        sock.sendall(b"POST /oaiv1/completions HTTP/1.0\r\nX-Api-Key: " + TEST_KEY.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        reply = b""
        while piece := sock.recv(65536):
            reply += piece
    head, _, raw = reply.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert payloads(raw)[-1] == "[DONE]"
