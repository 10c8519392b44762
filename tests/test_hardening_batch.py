"""A batch told to wait past the cap stops at once (issue 12, item 8), and the unclear errors of
item 10 say what to do."""

from __future__ import annotations

import json
import warnings
from fractions import Fraction

import pytest
from conftest import TEST_KEY
from scripted import http, scripted_fixture  # noqa: F401 - the "scripted" fixture

from pienteger_nb import Client, complete_many
from pienteger_nb.batch.pacing import RateLimiter
from pienteger_nb.batch.run import BatchInterruptedWarning
from pienteger_nb.errors import ConfigurationError


def _stream_answer(text: str) -> bytes:
    events = [{"choices": [{"text": text, "index": 0, "finish_reason": "stop"}]}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return http("200 OK", body.encode(), ctype="text/event-stream")


def test_a_429_asking_for_days_stops_the_batch_at_once(scripted) -> None:
    too_long = http("429 Too Many Requests", b'{"error": {"message": "slow down", "type": "rate_limit"}}',
                    headers={"Retry-After": "999999"})
    # One connection at a time, in order: two rows, then the 429, then answers nobody should ask for.
    server = scripted([_stream_answer("a"), _stream_answer("b"), too_long] + [_stream_answer("z")] * 5)
    trace: list[tuple[object, ...]] = []
    client = Client(api_key=TEST_KEY, base_url=server.url, max_retries=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = complete_many([f"p{i}" for i in range(8)], client=client, concurrency=1, progress=False,
                           limiter=RateLimiter(concurrency=1, trace=trace))
    server.close()
    assert list(df["status"][:3]) == ["ok", "ok", "error"] and set(df["status"][3:]) == {"cancelled"}
    assert "999999 s" in df["error"][2] and "max_retry_wait" in df["error"][2]
    assert len(server.received) == 3  # nothing more was sent once the service asked for days
    assert not [t for t in trace if t[0] == "pause"]  # no worker was paused for the wait
    lines = [str(w.message) for w in caught if issubclass(w.category, BatchInterruptedWarning)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "999999 s" in lines[0] and "resume=" in lines[0] and "2 of 8 rows ok" in lines[0]
    again = complete_many([f"p{i}" for i in range(8)], client=Client(api_key=TEST_KEY, base_url=scripted(
        [_stream_answer("c")] * 6).url), concurrency=1, progress=False, resume=df)
    assert (again["status"] == "ok").all() and list(again["text"][:2]) == ["a", "b"]


@pytest.mark.parametrize(("option", "value"), [
    ("timeout", float("nan")), ("timeout", float("inf")), ("connect_timeout", float("nan")),
    ("timeout", -1), ("deadline", 0), ("deadline", float("inf")),
])
def test_bad_timeouts_are_refused_when_the_client_is_made(option: str, value: float) -> None:
    with pytest.raises(ValueError) as info:
        Client(api_key=TEST_KEY, base_url="http://127.0.0.1:9/oaiv1", **{option: value})
    assert str(info.value).startswith(f"{option} must be")


def test_an_unclosed_ipv6_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        Client(api_key=TEST_KEY, base_url="http://[::1")
    assert "PIENTEGER_BASE_URL" in str(info.value)


def test_a_fraction_temperature_is_sent_as_a_number(emulator) -> None:
    records: list[object] = []
    client = Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append)
    assert client.complete("x", temperature=Fraction(1, 3), max_tokens=2).text is not None
    assert emulator.requests[-1].body["temperature"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError) as info:
        client.complete("x", temperature=Fraction(7, 2))
    assert "temperature" in str(info.value) and len(records) == 1  # refused before sending: no row


def test_usage_since_far_back_is_one_line(ip, capsys) -> None:
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        res = ip.run_cell("%pienteger usage --since 99999999d", silent=True)
    text = cap.stdout + cap.stderr
    assert "Traceback" not in text and len([line for line in text.splitlines() if line.strip()]) <= 3, text
    assert res.success or "since" in text
