"""End to end: real calls through Client(on_call=log.record) against the emulator, into a real file."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TEST_KEY

from pienteger_nb import BadRequestError, Client, StreamError
from pienteger_nb.ledger.default import usage
from pienteger_nb.ledger.store import UsageLog


@pytest.fixture
def log(tmp_path):
    with UsageLog(tmp_path / "e2e.sqlite", store_prompts=True) as opened:
        yield opened


@pytest.fixture
def client(emulator, log):
    with Client(api_key=TEST_KEY, base_url=emulator.url, on_call=log.record, sleep=lambda s: None,
                timeout=10) as c:
        yield c


def only_row(log: UsageLog) -> pd.Series:
    df = log.frame()
    assert len(df) == 1
    return df.iloc[0]


def test_an_ok_call(client, log):
    c = client.complete("Say this is a test", model="text-curie-001", max_tokens=7, temperature=0)
    row = only_row(log)
    assert (row["status"], row["model"], row["source"], row["error"]) == ("ok", "text-curie-001", "client", "")
    assert row["http_status"] == 200 and not row["stream"] and row["attempts"] == 1
    assert row["request_id"] == c.request_id and row["finish_reason"] == c.finish_reason
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens)
    assert row["usage_source"] == "reported" and row["latency_s"] == pytest.approx(c.latency_s, abs=1e-3)
    assert row["prompt"] == "Say this is a test" and row["text"] == c.text


def test_every_choice_text_is_stored_plain_and_streamed(client, log):
    import json

    c = client.complete(["l1", "l2"], model="text-ada-001", max_tokens=4, n=2, temperature=0)
    with client.stream(["l1", "l2"], model="text-ada-001", max_tokens=4, n=2, temperature=0) as s:
        list(s)
    plain, streamed = log.frame()["text"]
    texts = [choice.text for choice in sorted(c.choices, key=lambda ch: ch.index)]
    assert len(texts) == 4 and json.loads(plain) == texts  # index = prompt position * n + i
    assert json.loads(streamed) == [s.texts[i] for i in sorted(s.texts)]


def test_a_400_error(client, emulator, log):
    emulator.queue_fault("status", status=400, code="invalid_value")
    with pytest.raises(BadRequestError):
        client.complete("Hi", model="text-ada-001", max_tokens=5)
    row = only_row(log)
    assert row["status"] == "error" and row["http_status"] == 400 and row["error"].startswith("BadRequestError: ")
    assert pd.isna(row["total_tokens"]) and pd.isna(row["usage_source"])


def test_a_stream(client, log):
    with client.stream("Once upon a time", max_tokens=30, seed=1) as s:
        text = "".join(s)
    row = only_row(log)
    assert row["status"] == "ok" and row["stream"] and row["text"] == text
    assert row["ttft_s"] == pytest.approx(s.completion.ttft_s, abs=1e-3) and 0 < row["ttft_s"] <= row["latency_s"]
    assert row["usage_source"] == "reported" and row["completion_tokens"] == s.completion.usage.completion_tokens


def test_a_cut_stream_is_an_error_with_estimated_tokens(client, emulator, log):
    emulator.queue_fault("cut", after=3)
    with pytest.raises(StreamError), client.stream("Once upon a time", max_tokens=40) as s:
        "".join(s)
    row = only_row(log)
    assert row["status"] == "error" and row["error"].startswith("StreamError: ") and row["stream"]
    assert row["usage_source"] == "estimated" and row["completion_tokens"] > 0 and row["text"] == s.text


def test_a_cancelled_stream(client, log):
    with client.stream("Once upon a time", max_tokens=40) as s:
        for _ in s:
            break
    row = only_row(log)
    assert row["status"] == "cancelled" and row["usage_source"] == "estimated" and row["stream"]


def test_the_key_is_never_stored(client, emulator, log, tmp_path):
    client.complete("Say this is a test", max_tokens=5)
    emulator.queue_fault("status", status=401)
    with pytest.raises(Exception):  # noqa: B017 - which error is not the point here
        client.complete("Say this is a test", max_tokens=5)
    with client.stream("Say this is a test", max_tokens=5) as s:
        list(s)
    assert len(log) == 3
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("e2e.sqlite*"))
    assert b"Say this is a test" in stored  # the scan sees what was stored...
    assert TEST_KEY.encode() not in stored and TEST_KEY[-8:].encode() not in stored  # ...and no key


def test_every_client_call_lands_in_the_default_ledger(env_emulator):
    # No on_call: the package's default recorder writes to PIENTEGER_USAGE_DB (tmp_path here).
    Client().complete("Hello", max_tokens=3)
    df = usage()
    assert len(df) == 1 and df["source"].iloc[0] == "client" and df["status"].iloc[0] == "ok"


def test_a_plain_client_call_in_a_cell_carries_the_cell_number(ip, env_emulator):
    # The default recorder (no on_call) stamps the running cell's number, as magic rows have.
    import pienteger_nb

    res = ip.run_cell("import pienteger_nb\npienteger_nb.Client().complete('x', max_tokens=2)", silent=True)
    assert res.success, res.error_in_exec
    pienteger_nb.Client().complete("outside any cell", max_tokens=2)
    rows = pienteger_nb.usage()
    assert rows["source"].tolist() == ["client", "client"]
    assert rows["execution_count"].iloc[0] == res.execution_count and pd.isna(rows["execution_count"].iloc[1])
