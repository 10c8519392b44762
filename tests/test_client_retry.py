"""Retries: which failures, how long the injected sleep was asked to wait, and the exception mapping."""

from __future__ import annotations

import datetime as dt
import inspect
import time
from email.utils import formatdate

import pytest
import requests
import urllib3.exceptions
from conftest import TEST_KEY

from pienteger_nb import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    Client,
    ConfigurationError,
    InternalServerError,
    PientegerError,
    RateLimitError,
    StreamError,
)
from pienteger_nb.client.httperrors import map_exception
from pienteger_nb.client.retry import BACKOFF_CAP, backoff, retry_after
from pienteger_nb.types import CallRecord


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(emulator, sleeps, records):
    with Client(api_key=TEST_KEY, base_url=emulator.url, sleep=sleeps.append, on_call=records.append,
                max_retries=2) as c:
        yield c


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_retry_with_backoff(client, emulator, sleeps, records, status):
    emulator.queue_fault("status", status=status, times=2)
    c = client.complete("x", max_tokens=2)
    assert c.attempts == 3 and records[-1].attempts == 3 and records[-1].status == "ok"
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter under 0.5 * 2**(n-1)
    assert len([r for r in emulator.requests if r.path.endswith("/completions")]) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(client, emulator, sleeps, status):
    emulator.queue_fault("status", status=status)
    with pytest.raises(PientegerError) as info:
        client.complete("x")
    assert info.value.status_code == status
    assert sleeps == [] and len(emulator.requests) == 1


def test_retries_exhausted_raise_the_last_error(client, emulator, sleeps, records):
    emulator.queue_fault("status", status=500, times=3)
    with pytest.raises(InternalServerError, match="after 3 attempts"):
        client.complete("x")
    assert len(sleeps) == 2 and records[-1].attempts == 3 and records[-1].http_status == 500


def test_retry_after_seconds_is_honoured(client, emulator, sleeps):
    emulator.queue_fault("status", status=429, retry_after=3)
    assert client.complete("x", max_tokens=1).attempts == 2
    assert sleeps == [3.0]


def test_retry_after_ms_wins_over_retry_after(client, emulator, sleeps):
    emulator.queue_fault("status", status=429, retry_after=3, retry_after_ms=250)
    client.complete("x", max_tokens=1)
    assert sleeps == [0.25]


def test_retry_after_http_date(client, emulator, sleeps):
    emulator.queue_fault("status", status=503, retry_after=formatdate(time.time() + 30, usegmt=True))
    client.complete("x", max_tokens=1)
    [wait] = sleeps
    assert 20 <= wait <= 31


def test_retry_after_above_the_cap_fails_fast_with_the_wait(client, emulator, sleeps, records):
    emulator.queue_fault("status", status=429, retry_after=120)
    with pytest.raises(RateLimitError) as info:
        client.complete("x")
    assert sleeps == [] and info.value.retry_after == 120
    assert "120 s" in str(info.value) and "max_retry_wait" in str(info.value)
    assert records[-1].attempts == 1
    # A higher cap waits instead.
    emulator.queue_fault("status", status=429, retry_after=120)
    client.with_options(max_retry_wait=200).complete("x", max_tokens=1)
    assert sleeps == [120.0]


def test_rate_limit_without_retries_says_how_long_to_wait(emulator):
    emulator.queue_fault("status", status=429, retry_after=7)
    with pytest.raises(RateLimitError, match="wait 7.0 s"):
        Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0).complete("x")


def test_insufficient_quota_is_not_retried(client, emulator, sleeps):
    emulator.queue_fault("status", status=429, code="insufficient_quota", retry_after=1)
    with pytest.raises(RateLimitError, match="quota") as info:
        client.complete("x")
    assert info.value.code == "insufficient_quota" and sleeps == []


def test_dropped_connection_before_an_answer_is_retried(client, emulator, sleeps, records):
    emulator.queue_fault("drop")
    assert client.complete("x", max_tokens=1).attempts == 2
    assert len(sleeps) == 1 and records[-1].attempts == 2


def test_a_stream_that_started_is_never_retried(client, emulator, sleeps, records):
    emulator.queue_fault("cut", after=2)
    with pytest.raises(StreamError), client.stream("x", max_tokens=30) as s:
        list(s)
    assert sleeps == [] and records[-1].attempts == 1 and len(emulator.requests) == 1


def test_a_stream_is_retried_before_it_starts(client, emulator, sleeps):
    emulator.queue_fault("status", status=503)
    with client.stream("x", max_tokens=5) as s:
        text = "".join(s)
    assert text == s.completion.text and s.completion.attempts == 2 and len(sleeps) == 1


def test_pacer_sees_every_attempt(emulator, sleeps):
    class Pacer:
        def __init__(self) -> None:
            self.acquired = 0
            self.observed: list[tuple] = []

        def acquire(self) -> None:
            self.acquired += 1

        def observe(self, status_code, retry_after, ratelimit) -> None:
            self.observed.append((status_code, retry_after, dict(ratelimit)))

    pacer = Pacer()
    c = Client(api_key=TEST_KEY, base_url=emulator.url, sleep=sleeps.append, pacer=pacer)
    emulator.queue_fault("status", status=429, retry_after=2)
    c.complete("x", max_tokens=1)
    assert pacer.acquired == 2
    assert [o[:2] for o in pacer.observed] == [(429, 2.0), (200, None)]
    assert "requests" in pacer.observed[-1][2]


def test_timeout_waiting_for_the_answer_is_a_timeout_error(emulator, sleeps):
    emulator.queue_fault("stall", times=2)
    c = Client(api_key=TEST_KEY, base_url=emulator.url, timeout=0.3, max_retries=1, sleep=sleeps.append)
    with pytest.raises(APITimeoutError, match="read timeout") as info:
        c.complete("x")
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)
    assert len(sleeps) == 1


# -- pure parts ------------------------------------------------------------------------------


def test_backoff_bounds():
    assert [backoff(n, rand=lambda: 1.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff(3, rand=lambda: 0.0) == 0.0
    assert all(0 <= backoff(n) <= BACKOFF_CAP for n in range(1, 20))


def test_retry_after_parsing():
    now = dt.datetime(2015, 10, 21, 7, 27, 30, tzinfo=dt.UTC)
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=lambda: now) == 30.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, now=lambda: now) == 0.0
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "-1"}) is None
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after-ms": "x", "retry-after": "9"}) == 9.0
    assert retry_after({}) is None


def _instances():
    for name, cls in inspect.getmembers(requests.exceptions, inspect.isclass):
        if issubclass(cls, requests.exceptions.RequestException):
            yield name, cls


@pytest.mark.parametrize(("name", "cls"), list(_instances()))
def test_every_requests_exception_maps_to_ours(name, cls):
    try:
        exc = cls("boom")
    except TypeError:  # JSONDecodeError wants (msg, doc, pos)
        exc = cls("boom", "{", 0)
    mapped = map_exception(exc)
    assert isinstance(mapped, PientegerError), name
    assert TEST_KEY not in str(mapped)


def test_exception_mapping_is_specific():
    assert isinstance(map_exception(requests.exceptions.ConnectTimeout()), APITimeoutError)
    assert isinstance(map_exception(requests.exceptions.ReadTimeout()), APITimeoutError)
    mid_stream = requests.exceptions.ConnectionError(
        urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out.")  # type: ignore[arg-type]
    )
    assert isinstance(map_exception(mid_stream), APITimeoutError)
    assert type(map_exception(requests.exceptions.ConnectionError())) is APIConnectionError
    assert type(map_exception(requests.exceptions.ChunkedEncodingError())) is APIConnectionError
    assert "proxy" in str(map_exception(requests.exceptions.ProxyError()))
    assert "TLS" in str(map_exception(requests.exceptions.SSLError()))
    for cls in (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader):
        assert isinstance(map_exception(cls()), ConfigurationError)
    assert isinstance(map_exception(urllib3.exceptions.ProtocolError("cut")), APIConnectionError)
    response = requests.Response()
    response.status_code = 400
    response._content = b'{"error": {"message": "bad", "param": "n"}}'
    mapped = map_exception(requests.exceptions.HTTPError(response=response))
    assert isinstance(mapped, BadRequestError) and mapped.param == "n"
