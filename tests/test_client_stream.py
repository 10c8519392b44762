"""Streams against the emulator: assembly by index, every stream fault, timeouts and cancellation."""

from __future__ import annotations

import contextlib
import threading

import pytest
from conftest import TEST_KEY

from pienteger_nb import APITimeoutError, AuthenticationError, Chunk, Client, StreamError
from pienteger_nb.types import CallRecord


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(emulator, records):
    with Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append, sleep=lambda s: None,
                timeout=10) as c:
        yield c


def read(client: Client, **params) -> tuple[list[str], object]:
    with client.stream("Once upon a time", max_tokens=40, seed=1, temperature=0, **params) as s:
        deltas = list(s)
    return deltas, s


def test_stream_yields_deltas_and_assembles_a_completion(client, emulator, records):
    deltas, s = read(client)
    assert len(deltas) > 1 and all(isinstance(d, str) and d for d in deltas)
    c = s.completion
    assert "".join(deltas) == s.text == c.text and c.text
    assert c.usage.source == "reported" and c.usage.completion_tokens > 0
    assert c.finish_reason in ("stop", "length") and c.request_id == s.request_id
    assert c.ttft_s is not None and 0 < c.ttft_s <= c.latency_s
    sent = emulator.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    [rec] = records
    assert rec.status == "ok" and rec.stream and rec.usage_source == "reported"
    assert rec.total_tokens == c.usage.total_tokens and rec.ttft_s == c.ttft_s and rec.text == c.text
    assert rec.finish_reason == c.finish_reason


def test_finished_streams_reuse_one_connection(client, emulator):
    # After [DONE] the client reads the chunked terminator, so the pooled connection is reused.
    for _ in range(3):
        read(client)
    client.complete("x", max_tokens=1)
    peers = {r.peer for r in emulator.requests}
    assert len(emulator.requests) == 4 and len(peers) == 1, peers


def test_without_include_usage_the_usage_is_estimated(emulator, records):
    c = Client(api_key=TEST_KEY, base_url=emulator.url, include_usage=False, on_call=records.append)
    _, s = read(c)
    assert "stream_options" not in emulator.requests[-1].body
    assert s.completion.usage.source == "estimated" and s.completion.usage.completion_tokens > 0
    assert records[-1].usage_source == "estimated"


def test_choices_assembled_by_index(client):
    with client.stream(["alpha", "beta"], n=2, max_tokens=8) as s:
        chunks = list(s.chunks())
    assert all(isinstance(ch, Chunk) for ch in chunks)
    assert {ch.index for ch in chunks if ch.usage is None} == {0, 1, 2, 3}
    assert chunks[-1].usage is not None and chunks[-1].usage.source == "reported"
    assert [ch.index for ch in s.completion.choices] == [0, 1, 2, 3]
    for ch in s.completion.choices:
        assert ch.text == "".join(x.text for x in chunks if x.index == ch.index and x.usage is None)
    assert s.texts[0] == s.completion.choices[0].text


@pytest.mark.parametrize("kind", ["crlf", "cr", "keepalive", "fields"])
def test_formatting_faults_give_the_same_text(client, emulator, kind):
    _, plain = read(client)
    emulator.queue_fault(kind)
    deltas, s = read(client)
    assert s.completion.text == plain.completion.text and "".join(deltas) == plain.text
    assert s.completion.usage == plain.completion.usage


def test_cut_mid_event_is_a_stream_error_with_partial_text(client, emulator, records):
    emulator.queue_fault("cut", after=3)
    with pytest.raises(StreamError) as info, client.stream("Once upon a time", max_tokens=40) as s:
        "".join(s)
    assert info.value.partial_text == s.text and s.text
    assert records[-1].status == "error" and records[-1].error.startswith("StreamError: ")
    assert records[-1].usage_source == "estimated" and records[-1].text == s.text
    assert s.completion is None and s.status == "error"


def test_malformed_event(client, emulator, records):
    emulator.queue_fault("malformed", after=2)
    with pytest.raises(StreamError, match="malformed") as info, client.stream("Hi", max_tokens=40) as s:
        list(s)
    assert info.value.partial_text == s.text and s.text
    assert records[-1].status == "error"


def test_error_event_mid_stream(client, emulator, records):
    emulator.queue_fault("error_event", after=2)
    with pytest.raises(StreamError, match="error mid-stream") as info, \
            client.stream("Hi", max_tokens=40) as s:
        list(s)
    assert info.value.partial_text == s.text and s.text and info.value.request_id == s.request_id
    assert records[-1].status == "error"


def test_no_done_is_a_stream_error_keeping_all_the_text(client, emulator, records):
    _, plain = read(client)
    emulator.queue_fault("no_done")
    with pytest.raises(StreamError, match=r"without \[DONE\]") as info:
        read(client)
    assert info.value.partial_text == plain.text
    assert records[-1].status == "error" and records[-1].text == plain.text


def test_stall_longer_than_the_read_timeout_is_a_timeout(emulator, records):
    emulator.queue_fault("stall", after=2)
    # max_retries=0 and a timeout with room: on a loaded machine the headers must not time out first.
    c = Client(api_key=TEST_KEY, base_url=emulator.url, timeout=1.5, max_retries=0, on_call=records.append)
    with pytest.raises(APITimeoutError, match="stalled") as info, c.stream("Hi", max_tokens=40) as s:
        list(s)
    assert s.text and info.value.__cause__ is not None
    assert records[-1].status == "error" and records[-1].error.startswith("APITimeoutError: ")


def test_close_from_another_thread_ends_iteration_quietly(client, emulator, records):
    emulator.queue_fault("stall", after=2)  # the reader blocks in recv() until close() wakes it
    s = client.stream("Hi", max_tokens=40)
    first = threading.Event()
    outcome: dict[str, object] = {}

    def reader() -> None:
        try:
            for _ in s:
                first.set()
            outcome["ended"] = "quietly"
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion
            outcome["ended"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    assert first.wait(10)
    s.close()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome["ended"] == "quietly"
    assert s.status == "cancelled" and s.cancelled and s.text
    assert [r.status for r in records] == ["cancelled"] and records[0].text == s.text
    assert records[0].usage_source == "estimated"


def test_leaving_the_with_early_records_cancelled(client, records):
    with client.stream("Hi", max_tokens=40) as s:
        for _ in s:
            break
    assert s.status == "cancelled" and [r.status for r in records] == ["cancelled"]


def test_keyboard_interrupt_records_cancelled_and_propagates(client, records):
    with pytest.raises(KeyboardInterrupt), client.stream("Hi", max_tokens=40) as s:
        for _ in s:
            raise KeyboardInterrupt
    assert s.status == "cancelled" and [r.status for r in records] == ["cancelled"]


def test_close_before_iterating(client, records):
    s = client.stream("Hi", max_tokens=5)
    s.close()
    assert list(s) == []
    assert s.status == "cancelled" and len(records) == 1
    s.close()
    assert len(records) == 1


def test_iterating_twice_is_refused(client):
    with client.stream("Hi", max_tokens=5) as s:
        list(s)
        with pytest.raises(RuntimeError, match="only once"):
            list(s)


def test_error_status_raises_at_stream_and_is_recorded(emulator, records):
    c = Client(api_key="pk-wrong-key-000000000000", base_url=emulator.url, on_call=records.append)
    with pytest.raises(AuthenticationError):
        c.stream("Hi")
    assert records[-1].status == "error" and records[-1].stream


def test_best_of_refused_with_stream(client, emulator):
    with pytest.raises(ValueError, match="best_of"):
        client.stream("Hi", best_of=2)
    assert emulator.requests == []


def test_close_delimited_stream_is_read_as_it_arrives(records, raw_server):
    """A body without chunked framing (HTTP/1.0 style) must not be buffered to the end."""
    first_seen = threading.Event()
    in_time: list[bool] = []

    def answer(conn) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                     b'data: {"choices":[{"text":"one","index":0}]}\n\n')
        in_time.append(first_seen.wait(10))  # the rest only once the client has shown the first delta
        conn.sendall(b'data: {"choices":[{"text":" two","index":0,"finish_reason":"stop"}]}\n\n'
                     b"data: [DONE]\n\n")

    c = Client(api_key=TEST_KEY, base_url=raw_server(answer), on_call=records.append, timeout=10)
    try:
        with c.stream("x") as s:
            deltas = []
            for delta in s:
                deltas.append(delta)
                first_seen.set()
    finally:
        first_seen.set()
    assert in_time == [True], "the first delta only arrived after the body ended"
    assert deltas == ["one", " two"] and s.completion.finish_reason == "stop"
    assert s.completion.usage.source == "estimated" and records[-1].status == "ok"


def test_request_preview_without_a_key_still_answers(emulator):
    preview = Client(base_url=emulator.url).request_preview("hi")
    assert preview["headers"]["X-Api-Key"] == "(not set)" and preview["json"]["prompt"] == "hi"


def test_close_while_the_reader_is_paused_records_at_once(client, records):
    """A reader suspended between deltas (and perhaps never resumed) is recorded cancelled by close()."""
    s = client.stream("Hi", max_tokens=40)
    it = iter(s)
    first = next(it)
    s.close()
    assert [r.status for r in records] == ["cancelled"] and records[0].text.startswith(first)
    assert list(it) == []  # resuming ends quietly, and records nothing more
    assert len(records) == 1


def test_a_stream_dropped_unread_is_recorded_cancelled(client, records):
    import gc

    client.stream("Hi", max_tokens=5)  # never entered, never iterated
    gc.collect()
    assert [r.status for r in records] == ["cancelled"]


def test_streamed_logprobs_are_merged_per_choice(client):
    with client.stream("Hi", max_tokens=6, logprobs=1, n=2) as s:
        list(s)
    for choice in s.completion.choices:
        lp = choice.logprobs
        assert lp is not None and len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
        assert "".join(lp["tokens"]) == choice.text


def test_an_error_event_that_echoes_the_key_never_shows_it(client, emulator, records):
    emulator.queue_fault("error_event", after=1, message=f"key {TEST_KEY} is revoked", code=TEST_KEY)
    with pytest.raises(StreamError, match="revoked") as info, client.stream("Hi", max_tokens=40) as s:
        list(s)
    assert TEST_KEY not in str(info.value) and TEST_KEY not in records[-1].error


@pytest.mark.timeout(30)  # a client that waits for the terminator hangs here (read timeout 600 s)
def test_a_body_held_open_after_done_does_not_hold_the_caller(records, raw_server):
    """After [DONE] the client takes the chunked terminator only if it is already there; it never waits."""
    release = threading.Event()

    def answer(conn) -> None:
        events = b'data: {"choices":[{"text":"one","index":0,"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(events), events))
        release.wait(30)  # the terminator comes only when the test is over
        with contextlib.suppress(OSError):
            conn.sendall(b"0\r\n\r\n")

    c = Client(api_key=TEST_KEY, base_url=raw_server(answer), on_call=records.append, timeout=600)
    try:
        with c.stream("x") as s:
            assert list(s) == ["one"]
            done_before_release = not release.is_set()
    finally:
        release.set()
    assert done_before_release and s.completion.text == "one" and records[-1].status == "ok"


@pytest.mark.parametrize("event", [
    b'{"choices":[{"text":5,"index":0}]}',
    b'{"choices":[null]}',
    b'{"choices":[{"text":"a","index":"0"}]}',
    b'{"choices":[{"text":"a","index":0}],"created":"yesterday"}',
])
def test_an_event_of_the_wrong_shape_is_a_stream_error_recorded_once(records, raw_server, event):
    body = b"data: " + event + b"\n\ndata: [DONE]\n\n"
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
    c = Client(api_key=TEST_KEY, base_url=url, on_call=records.append, timeout=10)
    with pytest.raises(StreamError, match="unexpected shape"), c.stream("x") as s:
        list(s)
    assert [r.status for r in records] == ["error"] and s.status == "error"
