"""The emulator over real HTTP with plain requests: endpoints, auth, parameters, records, knobs."""

from __future__ import annotations

import json
import re
import threading

import pytest
import requests
from conftest import TEST_KEY

from pienteger_nb.emulator import Emulator

TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
MODEL_IDS = ["text-davinci-003", "text-davinci-002", "gpt-3.5-turbo-instruct", "text-curie-001",
             "text-babbage-001", "text-ada-001"]


def count(text: str) -> int:
    return len(TOKEN.findall(text))


@pytest.fixture
def session(emulator):
    with requests.Session() as s:
        s.headers["X-Api-Key"] = TEST_KEY
        yield s


def complete(session, emulator, **body):
    body.setdefault("model", "text-davinci-003")
    return session.post(emulator.url + "/completions", json=body, timeout=10)


def events(raw: bytes) -> list[str]:
    """The data payloads of an SSE body (a minimal reader written for these tests)."""
    text = raw.decode().replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for block in text.split("\n\n"):
        data = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if data:
            out.append("\n".join(data))
    return out


def stream(session, emulator, **body) -> tuple[requests.Response, list[str]]:
    body.setdefault("model", "text-davinci-003")
    resp = session.post(emulator.url + "/completions", json={**body, "stream": True}, stream=True,
                        timeout=10)
    return resp, events(resp.raw.read())


# -- auth and models ------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong"}, {"Authorization": f"Bearer {TEST_KEY}"}])
def test_missing_or_wrong_key_is_401_with_json_error(emulator, headers):
    for path in ("/models", "/completions"):
        method = "GET" if path == "/models" else "POST"
        resp = requests.request(method, emulator.url + path, headers=headers, json={"model": "text-ada-001"},
                                timeout=10)
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert error["code"] == "invalid_api_key" and "X-Api-Key" in error["message"]
        assert resp.headers["x-request-id"].startswith("req_")


def test_models_and_getmodels_list_every_model(session, emulator):
    for path in ("/models", "/getmodels"):
        resp = session.get(emulator.url + path, timeout=10)
        assert resp.status_code == 200
        doc = resp.json()
        assert doc["object"] == "list"
        assert [m["id"] for m in doc["data"]] == MODEL_IDS
        assert all(m["object"] == "model" and m["owned_by"] and m["permission"] for m in doc["data"])


def test_one_model_and_unknown_model(session, emulator):
    resp = session.get(emulator.url + "/models/text-curie-001", timeout=10)
    assert resp.status_code == 200 and resp.json()["id"] == "text-curie-001"
    assert resp.json()["context_length"] == 2048
    resp = session.get(emulator.url + "/models/gpt-99", timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


def test_getmodels_only_makes_models_404(session):
    with Emulator(TEST_KEY, getmodels_only=True) as emu:
        assert session.get(emu.url + "/models", timeout=10).status_code == 404
        assert session.get(emu.url + "/getmodels", timeout=10).status_code == 200


def test_every_response_has_request_id_and_ratelimit_headers(session, emulator):
    seen = set()
    for resp in (session.get(emulator.url + "/models", timeout=10),
                 complete(session, emulator, prompt="x"),
                 complete(session, emulator, model="nope"),
                 session.get(emulator.url + "/nowhere", timeout=10)):
        assert re.fullmatch(r"req_[0-9a-f]{24}", resp.headers["x-request-id"])
        assert int(resp.headers["x-ratelimit-remaining-requests"]) >= 0
        assert int(resp.headers["x-ratelimit-remaining-tokens"]) >= 0
        seen.add(resp.headers["x-request-id"])
    assert len(seen) == 4


# -- completions ----------------------------------------------------------------------------


def test_plain_completion_shape_and_davinci_quirk(session, emulator):
    resp = complete(session, emulator, prompt="Say this is a test", max_tokens=7, temperature=0)
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["object"] == "text_completion" and doc["id"].startswith("cmpl-")
    assert doc["model"] == "text-davinci:003"
    (choice,) = doc["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert doc["usage"] == {"prompt_tokens": 5, "completion_tokens": count(choice["text"]),
                            "total_tokens": 5 + count(choice["text"])}
    other = complete(session, emulator, model="text-ada-001", prompt="x").json()
    assert other["model"] == "text-ada-001"


def test_max_tokens_gives_length_and_natural_end_gives_stop(session, emulator):
    emulator.natural_end = False
    doc = complete(session, emulator, prompt="Once upon a time", max_tokens=40).json()
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 40 == count(doc["choices"][0]["text"])
    emulator.natural_end = True
    doc = complete(session, emulator, prompt="Once upon a time", max_tokens=3000, temperature=0).json()
    text = doc["choices"][0]["text"]
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert text.rstrip()[-1] in ".!?" and doc["usage"]["completion_tokens"] < 3000


def test_text_reads_like_english(session, emulator):
    text = complete(session, emulator, prompt="It was", max_tokens=60, temperature=0).json()["choices"][0]["text"]
    words = re.findall(r"[A-Za-z]+", text)
    common = {"the", "and", "of", "a", "to", "in", "was", "it", "that", "i", "her", "she", "he", "his", "with"}
    assert len(words) > 30 and sum(w.lower() in common for w in words) >= 5


def test_deterministic_at_temperature_zero_and_with_a_seed(session, emulator):
    def text(**kw):
        return complete(session, emulator, max_tokens=30, **kw).json()["choices"][0]["text"]

    assert text(prompt="Once upon a time", temperature=0) == text(prompt="Once upon a time", temperature=0)
    assert text(prompt="Once upon a time", temperature=0) != text(prompt="Call me", temperature=0)
    assert text(prompt="Hi", temperature=1, seed=7) == text(prompt="Hi", temperature=1, seed=7)
    seeded = {text(prompt="Hi", temperature=1, seed=s) for s in range(5)}
    assert len(seeded) > 1
    # Same request, streamed: the same text.
    _, data = stream(session, emulator, prompt="Once upon a time", temperature=0, max_tokens=30)
    streamed = "".join(json.loads(d)["choices"][0]["text"] for d in data if d != "[DONE]")
    assert streamed == text(prompt="Once upon a time", temperature=0)


def test_stop_truncates_before_the_stop_sequence(session, emulator):
    emulator.natural_end = False
    full = complete(session, emulator, prompt="Call me", max_tokens=60, temperature=0).json()["choices"][0]
    stop = full["text"][20:24]
    doc = complete(session, emulator, prompt="Call me", max_tokens=60, temperature=0, stop=[stop, "zzzz"]).json()
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == full["text"][: full["text"].index(stop)]
    assert doc["usage"]["completion_tokens"] == count(choice["text"])


def test_prompt_list_and_n_number_choices_by_prompt_position(session, emulator):
    doc = complete(session, emulator, prompt=["One", "Two"], n=3, max_tokens=5, temperature=0).json()
    assert [c["index"] for c in doc["choices"]] == list(range(6))
    texts = [c["text"] for c in doc["choices"]]
    assert texts[0] == texts[1] == texts[2] and texts[3] == texts[4] == texts[5]
    assert doc["usage"]["prompt_tokens"] == 2
    assert doc["usage"]["completion_tokens"] == sum(count(t) for t in texts)


def test_streamed_choices_interleave_and_end_with_done(session, emulator):
    emulator.natural_end = False
    resp, data = stream(session, emulator, prompt=["One", "Two"], n=2, max_tokens=4)
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert [c["choices"][0]["index"] for c in chunks[:4]] == [0, 1, 2, 3]
    assert len(chunks) == 16 and all("usage" not in c for c in chunks)
    for chunk in chunks:
        (choice,) = chunk["choices"]
        last = chunk is [c for c in chunks if c["choices"][0]["index"] == choice["index"]][-1]
        assert choice["finish_reason"] == ("length" if last else None)
        assert chunk["model"] == "text-davinci:003" and chunk["object"] == "text_completion"


def test_include_usage_adds_a_last_chunk_without_choices(session, emulator):
    _, data = stream(session, emulator, prompt="Hello there", max_tokens=5,
                     stream_options={"include_usage": True})
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == []
    text = "".join(c["choices"][0]["text"] for c in chunks[:-1])
    assert last["usage"] == {"prompt_tokens": 2, "completion_tokens": count(text),
                             "total_tokens": 2 + count(text)}


def test_echo_prepends_the_prompt_plain_and_streamed(session, emulator):
    doc = complete(session, emulator, prompt="Call me", echo=True, max_tokens=5, temperature=0).json()
    plain = complete(session, emulator, prompt="Call me", max_tokens=5, temperature=0).json()
    assert doc["choices"][0]["text"] == "Call me" + plain["choices"][0]["text"]
    assert doc["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    _, data = stream(session, emulator, prompt="Call me", echo=True, max_tokens=5, temperature=0)
    assert json.loads(data[0])["choices"][0]["text"] == "Call me"


def test_suffix_is_accepted_and_counted_in_the_prompt(session, emulator):
    doc = complete(session, emulator, prompt="def f(x):", suffix="return y", max_tokens=5).json()
    assert doc["usage"]["prompt_tokens"] == count("def f(x):") + count("return y")
    assert "return y" not in doc["choices"][0]["text"]


@pytest.mark.parametrize("echo", [False, True])
def test_logprobs_have_the_documented_shape(session, emulator, echo):
    doc = complete(session, emulator, prompt="Call me Ishmael", logprobs=3, max_tokens=8, echo=echo).json()
    choice = doc["choices"][0]
    lp = choice["logprobs"]
    n = len(lp["tokens"])
    assert n == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"] == sorted(lp["text_offset"])
    start = 0 if echo else len("Call me Ishmael")
    assert lp["text_offset"][0] == start
    rest = 1 if echo else 0
    if echo:
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    for value, top in zip(lp["token_logprobs"][rest:], lp["top_logprobs"][rest:], strict=True):
        assert isinstance(value, float) and value <= 0
        assert isinstance(top, dict) and 1 <= len(top) <= 3


def test_streamed_logprobs_hold_one_token_per_chunk(session, emulator):
    _, data = stream(session, emulator, prompt="Call me", logprobs=2, max_tokens=4)
    for d in data[:-1]:
        choice = json.loads(d)["choices"][0]
        assert choice["logprobs"]["tokens"] == [choice["text"]]
        assert len(choice["logprobs"]["top_logprobs"][0]) <= 2


def test_best_of_returns_n_and_bills_every_candidate(session, emulator):
    doc = complete(session, emulator, prompt="Hi", best_of=3, max_tokens=6, temperature=0).json()
    (choice,) = doc["choices"]
    assert doc["usage"]["completion_tokens"] == 3 * count(choice["text"])


def test_max_tokens_zero_with_echo_scores_the_prompt(session, emulator):
    doc = complete(session, emulator, prompt="Call me", echo=True, max_tokens=0, logprobs=0).json()
    choice = doc["choices"][0]
    assert choice["text"] == "Call me" and choice["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 0


def test_default_prompt_and_max_tokens(session, emulator):
    emulator.natural_end = False
    doc = complete(session, emulator).json()
    assert doc["usage"]["prompt_tokens"] == count("<|endoftext|>")
    assert doc["usage"]["completion_tokens"] == 16


# -- records --------------------------------------------------------------------------------


def test_records_what_it_received_with_the_key_masked(session, emulator):
    complete(session, emulator, prompt="hello", max_tokens=3)
    requests.get(emulator.url + "/models", headers={"X-Api-Key": "another-wrong-key"}, timeout=10)
    first, second = emulator.requests
    assert (first.method, first.path) == ("POST", "/oaiv1/completions")
    assert first.body == {"model": "text-davinci-003", "prompt": "hello", "max_tokens": 3}
    assert first.headers["X-Api-Key"] == "****" + TEST_KEY[-4:]
    assert first.headers["x-api-key"] == first.headers["X-Api-Key"]
    assert first.headers["content-type"] == "application/json"
    assert second.headers["X-Api-Key"] == "****-key" and second.body is None
    assert TEST_KEY not in repr(emulator.requests) and TEST_KEY[:-4] not in str(first.headers)
    emulator.reset()
    assert emulator.requests == []


def test_recording_is_thread_safe_under_concurrent_clients(emulator):
    def worker(failures: list) -> None:
        with requests.Session() as s:
            s.headers["X-Api-Key"] = TEST_KEY
            for _ in range(15):
                resp = complete(s, emulator, prompt="x", max_tokens=2)
                if resp.status_code != 200:
                    failures.append(resp.status_code)

    failures: list = []
    threads = [threading.Thread(target=worker, args=(failures,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert failures == [] and len(emulator.requests) == 90


# -- knobs ----------------------------------------------------------------------------------


def test_rpm_answers_429_with_retry_after_and_counts_down(session, emulator):
    emulator.rpm = 2
    first = complete(session, emulator, prompt="a", max_tokens=1)
    second = complete(session, emulator, prompt="a", max_tokens=1)
    assert [first.status_code, second.status_code] == [200, 200]
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    third = complete(session, emulator, prompt="a", max_tokens=1)
    assert third.status_code == 429
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    emulator.rpm = None
    assert complete(session, emulator, prompt="a", max_tokens=1).status_code == 200


def test_paced_stream_keeps_its_text(session, emulator):
    _, fast = stream(session, emulator, prompt="Hi", max_tokens=10, temperature=0)
    emulator.tokens_per_second = 2000.0
    emulator.latency = 0.001
    _, paced = stream(session, emulator, prompt="Hi", max_tokens=10, temperature=0)
    assert [json.loads(d)["choices"] for d in paced[:-1]] == [json.loads(d)["choices"] for d in fast[:-1]]


def test_stop_releases_a_long_latency_wait(session):
    emu = Emulator(TEST_KEY, latency=3600).start()
    outcome: list = []

    def call() -> None:
        try:
            session.post(emu.url + "/completions", json={"model": "text-ada-001"}, timeout=30)
            outcome.append("answered")
        except requests.ConnectionError:
            outcome.append("closed")

    worker = threading.Thread(target=call)
    worker.start()
    assert emu.wait_for_requests(1)  # recorded before the latency wait starts
    emu.stop()
    worker.join(10)
    assert not worker.is_alive() and outcome == ["closed"]
