"""The replay cache against the real emulator over loopback and a real SQLite ledger file."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import TEST_KEY

from pienteger_nb import Client, clear_cache, config, usage
from pienteger_nb.errors import APIStatusError, StreamError
from pienteger_nb.ledger import cache_stats, default_log
from pienteger_nb.replay import cache_key


@pytest.fixture
def client(emulator):
    with Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0) as c:
        yield c


def sent(emulator) -> int:
    return sum(1 for r in emulator.requests if r.path.endswith("/completions"))


def entries() -> int:
    return cache_stats().entries


# --- when a request is replayed -------------------------------------------------------------


def test_auto_replays_temperature_zero(client, emulator):
    first = client.complete("Say this is a test", max_tokens=7, temperature=0)
    again = client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert sent(emulator) == 1
    assert (first.cached, again.cached) == (False, True)
    assert again.text == first.text and again.choices == first.choices
    assert again.usage == first.usage and again.finish_reason == first.finish_reason


def test_auto_replays_a_seed(client, emulator):
    first = client.complete("Tell a story", max_tokens=12, temperature=0.9, seed=42)
    again = client.complete("Tell a story", max_tokens=12, temperature=0.9, seed=42)
    assert sent(emulator) == 1 and again.cached and again.text == first.text
    client.complete("Tell a story", max_tokens=12, temperature=0.9, seed=43)  # another seed: another key
    assert sent(emulator) == 2


def test_auto_calls_again_at_temperature_above_zero(client, emulator):
    client.complete("Tell a story", max_tokens=12, temperature=0.7)
    again = client.complete("Tell a story", max_tokens=12, temperature=0.7)
    assert sent(emulator) == 2 and not again.cached
    assert entries() == 0  # nothing kept that auto would never replay


def test_cache_true_replays_any_and_false_never(emulator):
    with Client(api_key=TEST_KEY, base_url=emulator.url, cache=True) as always:
        always.complete("Tell a story", max_tokens=12, temperature=0.7)
        assert always.complete("Tell a story", max_tokens=12, temperature=0.7).cached
    assert sent(emulator) == 1
    with Client(api_key=TEST_KEY, base_url=emulator.url, cache=False) as never:
        never.complete("Say this is a test", max_tokens=7, temperature=0)
        assert not never.complete("Say this is a test", max_tokens=7, temperature=0).cached
    assert sent(emulator) == 3


def test_per_call_cache_overrides_and_config_sets_the_default(client, emulator):
    client.complete("Hi", max_tokens=5, temperature=0)
    assert not client.complete("Hi", max_tokens=5, temperature=0, cache=False).cached
    assert sent(emulator) == 2
    config.set_kernel("cache", "off")
    with Client(api_key=TEST_KEY, base_url=emulator.url) as off:
        assert off.cache is False
        assert not off.complete("Hi", max_tokens=5, temperature=0).cached


def test_refresh_calls_and_replaces_the_stored_answer(client, emulator):
    client.complete("Say this is a test", max_tokens=7, temperature=0)
    fresh = client.complete("Say this is a test", max_tokens=7, temperature=0, refresh=True)
    assert sent(emulator) == 2 and not fresh.cached
    replay = client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert replay.cached and sent(emulator) == 2
    assert replay.request_id == fresh.request_id  # the answer kept is the refreshed one
    assert entries() == 1


def test_n_above_one_replays_every_choice(client, emulator):
    first = client.complete(["one", "two"], max_tokens=6, temperature=0, n=2, logprobs=1)
    again = client.complete(["one", "two"], max_tokens=6, temperature=0, n=2, logprobs=1)
    assert sent(emulator) == 1 and again.cached
    assert len(again.choices) == 4
    assert [(c.index, c.text, c.finish_reason, c.logprobs) for c in again.choices] == [
        (c.index, c.text, c.finish_reason, c.logprobs) for c in first.choices
    ]


def test_a_stream_replays_a_plain_answer_as_deltas(client, emulator):
    first = client.complete("Once upon a time", max_tokens=30, temperature=0, n=2)
    with client.stream("Once upon a time", max_tokens=30, temperature=0, n=2) as s:
        deltas = list(s)
    assert sent(emulator) == 1
    assert len(deltas) > 1 and "".join(deltas) == first.text
    done = s.completion
    assert done is not None and done.cached
    assert done.choices == first.choices and done.usage == first.usage


def test_a_streamed_answer_is_stored_and_replayed_as_a_stream(client, emulator):
    with client.stream("Once upon a time", max_tokens=20, seed=7) as s:
        streamed = "".join(s)
    with client.stream("Once upon a time", max_tokens=20, seed=7) as again:
        assert "".join(again) == streamed
    assert sent(emulator) == 1 and again.completion is not None and again.completion.cached
    assert client.complete("Once upon a time", max_tokens=20, seed=7).text == streamed


# --- what the ledger keeps -----------------------------------------------------------------


def test_a_replay_is_a_ledger_row_with_the_original_tokens(client, emulator):
    first = client.complete("Say this is a test", max_tokens=7, temperature=0)
    client.complete("Say this is a test", max_tokens=7, temperature=0)
    rows = usage()
    assert len(rows) == 2 and list(rows["status"]) == ["ok", "ok"]
    assert list(rows["prompt_tokens"]) == [first.usage.prompt_tokens] * 2
    assert list(rows["completion_tokens"]) == [first.usage.completion_tokens] * 2
    if "cached" not in rows.columns:  # the cached/cost columns come with the spend work
        pytest.skip("the ledger has no cached/cost columns yet")
    assert list(rows["cached"]) == [False, True]
    assert rows["cost"].iloc[1] == 0


def test_cache_stats_count_replays_and_tokens_saved(client, emulator):
    first = client.complete("Say this is a test", max_tokens=7, temperature=0)
    for _ in range(3):
        client.complete("Say this is a test", max_tokens=7, temperature=0)
    stats = cache_stats()
    assert (stats.entries, stats.replays) == (1, 3)
    assert stats.tokens_saved == 3 * first.usage.total_tokens
    assert stats.unpriced_replays == 3 and "unpriced" in str(stats)


@pytest.mark.parametrize("fault", [{"kind": "status", "status": 400}, {"kind": "status", "status": 500}])
def test_errors_are_never_stored(client, emulator, fault):
    emulator.queue_fault(fault.pop("kind"), **fault)
    with pytest.raises(APIStatusError):
        client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert entries() == 0
    assert not client.complete("Say this is a test", max_tokens=7, temperature=0).cached
    assert entries() == 1


def test_broken_and_cancelled_streams_are_never_stored(client, emulator):
    emulator.queue_fault("cut", after=2)
    with pytest.raises(StreamError), client.stream("Once upon a time", max_tokens=20, temperature=0) as s:
        list(s)
    with client.stream("Once upon a time", max_tokens=20, temperature=0) as s:
        next(iter(s))  # leave early: cancelled
    assert s.status == "cancelled"
    assert entries() == 0
    assert not client.complete("Once upon a time", max_tokens=20, temperature=0).cached


def _file_bytes(path: str) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        try:
            with open(path + suffix, "rb") as f:
                data += f.read()
        except FileNotFoundError:
            pass
    return data


@pytest.mark.parametrize("store_prompts", [False, True])
def test_the_prompt_is_kept_only_with_store_prompts(client, emulator, store_prompts):
    config.set_kernel("store_prompts", store_prompts)
    prompt = "Zanzibar-quokka-4711 marmalade"
    answer = client.complete(prompt, max_tokens=7, temperature=0)
    assert entries() == 1
    raw = _file_bytes(default_log().path)
    assert answer.text.encode() in raw  # the answer is what the cache is for
    assert (prompt.encode() in raw) is store_prompts


def test_clear_cache_empties_the_store(client, emulator):
    client.complete("Say this is a test", max_tokens=7, temperature=0)
    client.complete("Another", max_tokens=7, temperature=0)
    assert clear_cache() == 2 and entries() == 0
    assert not client.complete("Say this is a test", max_tokens=7, temperature=0).cached
    assert sent(emulator) == 3


def test_the_store_is_in_the_ledger_file(client, emulator):
    client.complete("Say this is a test", max_tokens=7, temperature=0)
    with sqlite3.connect(default_log().path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM replay_cache").fetchone()
    assert count == 1


# --- the key ---------------------------------------------------------------------------------


def test_the_key_covers_host_model_prompt_and_parameters_but_not_stream():
    body = {"model": "m", "prompt": "p", "temperature": 0, "max_tokens": 5}
    key = cache_key("http://127.0.0.1:8000/oaiv1", body)
    assert key == cache_key("http://127.0.0.1:8000/oaiv1/", dict(reversed(list(body.items()))))
    assert key == cache_key("http://127.0.0.1:8000/oaiv1",
                            {**body, "stream": True, "stream_options": {"include_usage": True}})
    for other in ({**body, "model": "n"}, {**body, "prompt": "q"}, {**body, "max_tokens": 6},
                  {**body, "stop": "\n"}):
        assert cache_key("http://127.0.0.1:8000/oaiv1", other) != key
    assert cache_key("http://127.0.0.1:9000/oaiv1", body) != key
    assert cache_key("http://127.0.0.1:8000/v2", body) != key


def test_another_service_does_not_replay(emulator, tmp_path):
    from pienteger_nb.emulator import Emulator

    with Client(api_key=TEST_KEY, base_url=emulator.url) as one:
        one.complete("Say this is a test", max_tokens=7, temperature=0)
    with Emulator(api_key=TEST_KEY) as other, Client(api_key=TEST_KEY, base_url=other.url) as two:
        assert not two.complete("Say this is a test", max_tokens=7, temperature=0).cached
        assert sent(other) == 1
