"""The emulator refuses bad requests like the service (400 naming the parameter) and survives bad input."""

from __future__ import annotations

import socket

import pytest
import requests
from conftest import TEST_KEY


@pytest.fixture
def session(emulator):
    with requests.Session() as s:
        s.headers["X-Api-Key"] = TEST_KEY
        yield s


def post(session, emulator, body, **kw):
    return session.post(emulator.url + "/completions", json=body, timeout=10, **kw)


BASE = {"model": "text-davinci-003", "prompt": "Hello"}
LONG_PROMPT = " word" * 2000  # 2000 tokens


@pytest.mark.parametrize(("change", "param"), [
    ({"model": None}, "model"),
    ({"model": 3}, "model"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"suffix": 3}, "suffix"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_tokens": 4097}, "max_tokens"),
    ({"model": "text-ada-001", "prompt": LONG_PROMPT, "max_tokens": 49}, "max_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"n": 129}, "n"),
    ({"n": True}, "n"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stream": True, "stream_options": {"include_usage": "y"}}, "stream_options.include_usage"),
    ({"stream": True, "stream_options": []}, "stream_options"),
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": -1}, "logprobs"),
    ({"echo": "y"}, "echo"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"frequency_penalty": -2.5}, "frequency_penalty"),
    ({"best_of": 0}, "best_of"),
    ({"best_of": 21}, "best_of"),
    ({"best_of": 2, "n": 3}, "best_of"),
    ({"best_of": 2, "stream": True}, "best_of"),
    ({"logit_bias": "x"}, "logit_bias"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"50256": 101}}, "logit_bias"),
    ({"seed": "1"}, "seed"),
    ({"user": "me"}, "user"),
])
def test_bad_parameter_is_400_naming_it(session, emulator, change, param):
    body = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    resp = post(session, emulator, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_unknown_model_is_404_naming_it(session, emulator):
    # PIENTEGER_API.md: 404 is "unknown model or path"; param and code still say which.
    resp = post(session, emulator, {**BASE, "model": "gpt-99"})
    assert resp.status_code == 404, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_found")


def test_limits_themselves_are_accepted(session, emulator):
    ok = {"temperature": 2, "top_p": 0, "n": 128, "logprobs": 5, "stop": ["a", "b", "c", "d"],
          "presence_penalty": -2, "frequency_penalty": 2, "best_of": 20, "max_tokens": 0,
          "logit_bias": {"50256": -100}, "seed": 123, "echo": False, "suffix": None}
    resp = post(session, emulator, {**BASE, **ok, "n": 20})
    assert resp.status_code == 200, resp.text
    assert post(session, emulator, {**BASE, "max_tokens": 4096 - 1}).status_code == 200
    assert post(session, emulator, {**BASE, "model": "text-ada-001", "prompt": LONG_PROMPT,
                                    "max_tokens": 48}).status_code == 200


def test_context_error_says_how_many_tokens(session, emulator):
    error = post(session, emulator, {**BASE, "max_tokens": 5000}).json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "4096" in error["message"] and "5001" in error["message"]


def test_unknown_parameters_pass_through_and_are_recorded(session, emulator):
    resp = post(session, emulator, {**BASE, "max_tokens": 2, "brand_new_option": {"x": 1}})
    assert resp.status_code == 200
    assert emulator.requests[-1].body["brand_new_option"] == {"x": 1}


def test_body_that_is_not_an_object_is_400(session, emulator):
    resp = post(session, emulator, ["model", "text-ada-001"])
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "body"


# -- bad input: each answered with JSON, and the same connection keeps serving ----------------


def still_serving(session, emulator, first: requests.Response) -> None:
    assert first.headers.get("Connection", "").lower() != "close"
    assert first.headers["x-request-id"].startswith("req_")
    resp = post(session, emulator, {**BASE, "max_tokens": 1})
    assert resp.status_code == 200
    # One connection served both: keep-alive held through the error.
    assert emulator.requests[-1].peer == emulator.requests[-2].peer


def test_malformed_json_is_400(session, emulator):
    resp = session.post(emulator.url + "/completions", data=b'{"model": "text-ada-001",',
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    still_serving(session, emulator, resp)


def test_wrong_content_type_is_415(session, emulator):
    resp = session.post(emulator.url + "/completions", data=b'{"model": "text-ada-001"}',
                        headers={"Content-Type": "text/plain"}, timeout=10)
    assert resp.status_code == 415 and "application/json" in resp.json()["error"]["message"]
    still_serving(session, emulator, resp)


def test_body_over_the_limit_is_413(session, emulator):
    emulator.max_body = 10_000
    resp = post(session, emulator, {**BASE, "prompt": "x" * 20_000})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    still_serving(session, emulator, resp)


def test_chunked_request_body_is_read(session, emulator):
    resp = session.post(emulator.url + "/completions", data=iter([b'{"model": "text-ada-001",', b' "max_tokens": 2}']),
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 200
    assert emulator.requests[-1].body == {"model": "text-ada-001", "max_tokens": 2}


def test_unknown_path_is_404(session, emulator):
    for url in (emulator.url + "/chat/completions", emulator.url.replace("/oaiv1", "") + "/completions"):
        resp = session.get(url, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_url"
    still_serving(session, emulator, resp)


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH", "FROB"])
def test_wrong_method_is_405_with_allow(session, emulator, method):
    resp = session.request(method, emulator.url + "/completions", json=BASE, timeout=10)
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"
    assert resp.json()["error"]["code"] == "method_not_allowed"
    still_serving(session, emulator, resp)


def test_head_gets_405_without_a_body(session, emulator):
    resp = session.head(emulator.url + "/models", timeout=10)
    assert resp.status_code == 405 and resp.content == b""
    still_serving(session, emulator, resp)


def test_garbage_request_line_gets_json_400(emulator):
    host, port = emulator.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b'"error"' in body
    with requests.Session() as s:
        s.headers["X-Api-Key"] = TEST_KEY
        assert post(s, emulator, BASE).status_code == 200


def raw_exchange(emulator, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_negative_content_length_is_400(emulator):
    reply = raw_exchange(emulator, b"POST /oaiv1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                   b"\r\nContent-Length: -5\r\nX-Api-Key: k\r\n\r\n{}")
    assert reply.startswith(b"HTTP/1.1 400") and b"Content-Length" in reply


def test_deeply_nested_json_is_400_not_a_crash(session, emulator):
    resp = session.post(emulator.url + "/completions", data=b"[" * 100_000 + b"]" * 100_000,
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    still_serving(session, emulator, resp)


@pytest.mark.parametrize("status", ["99", "100", "600", "1000"])
def test_a_status_fault_outside_200_to_599_is_refused(session, emulator, status):
    resp = post(session, emulator, BASE, headers={"X-Emulator-Fault": f"status;status={status}"})
    assert resp.status_code == 400 and "status" in resp.json()["error"]["message"]
    with pytest.raises(ValueError, match="status"):
        emulator.queue_fault("status", status=int(status))
