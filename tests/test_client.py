"""Client against the emulator over loopback: complete, models, parameters on the wire, errors, records."""

from __future__ import annotations

import logging
import threading

import pytest
from conftest import TEST_KEY

import pienteger_nb.client.client as client_module
from pienteger_nb import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    Client,
    ConfigurationError,
    InternalServerError,
    NotFoundError,
    PientegerError,
    config,
)
from pienteger_nb.types import CallRecord, Completion


def header(request, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return None


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(emulator, records):
    with Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append, sleep=lambda s: None) as c:
        yield c


def test_complete_returns_a_typed_completion(client, emulator, records):
    c = client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert isinstance(c, Completion)
    assert c.text and c.choices[0].index == 0
    assert c.finish_reason in ("stop", "length")
    assert c.usage.source == "reported"
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    assert c.model == "text-davinci:003" and c.requested_model == "text-davinci-003"
    assert c.request_id and c.attempts == 1 and c.latency_s > 0
    assert set(c.ratelimit) <= {"requests", "tokens"}
    request = emulator.requests[-1]
    assert request.method == "POST" and request.path.endswith("/completions")
    assert header(request, "User-Agent").startswith("pienteger-nb/")
    assert header(request, "Content-Type") == "application/json"
    assert header(request, "X-Api-Key") is not None
    assert header(request, "Authorization") is None
    [rec] = records
    assert rec.status == "ok" and rec.model == "text-davinci-003" and rec.source == "client"
    assert rec.request_id == c.request_id and rec.http_status == 200 and not rec.stream
    assert rec.total_tokens == c.usage.total_tokens and rec.usage_source == "reported"
    assert rec.time.tzinfo is not None and rec.prompt == "Say this is a test" and rec.text == c.text


def test_every_parameter_goes_on_the_wire(client, emulator):
    params = {
        "suffix": "THE END", "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "n": 2, "stop": ["\n", "###"],
        "echo": True, "logprobs": 2, "presence_penalty": 0.5, "frequency_penalty": -0.5, "best_of": 3,
        "logit_bias": {"50256": -100}, "seed": 42,
    }
    client.complete(["one", "two"], model="text-curie-001", **params)
    sent = emulator.requests[-1].body
    assert sent == {"model": "text-curie-001", "prompt": ["one", "two"], **params}


def test_several_prompts_and_n_assemble_by_index(client):
    c = client.complete(["a", "b"], n=2, max_tokens=3)
    assert [ch.index for ch in c.choices] == [0, 1, 2, 3]


def test_extra_body_passes_through_and_bad_params_send_nothing(client, emulator):
    client.complete("x", max_tokens=2, extra_body={"brand_new": [1, 2]})
    assert emulator.requests[-1].body["brand_new"] == [1, 2]
    before = len(emulator.requests)
    with pytest.raises(ValueError, match="did you mean max_tokens"):
        client.complete("x", max_token=2)
    with pytest.raises(ValueError, match="read-only"):
        client.complete("x", user="someone")
    with pytest.raises(ValueError, match=r"client\.stream"):
        client.complete("x", stream=True)
    assert len(emulator.requests) == before


def test_models_and_model(client, emulator):
    models = client.models()
    ids = {m.id for m in models}
    assert {"text-davinci-003", "gpt-3.5-turbo-instruct", "text-ada-001"} <= ids
    assert emulator.requests[-1].path.endswith("/models")
    assert client.model("text-ada-001").id == "text-ada-001"
    with pytest.raises(NotFoundError, match=r"client\.models\(\)"):
        client.model("no-such-model")


def test_models_falls_back_to_getmodels_and_remembers():
    from pienteger_nb.emulator import Emulator

    with Emulator(api_key=TEST_KEY, getmodels_only=True) as emu, \
            Client(api_key=TEST_KEY, base_url=emu.url) as c:
        assert {m.id for m in c.models()} >= {"text-davinci-003"}
        paths = [r.path.rsplit("/", 1)[-1] for r in emu.requests]
        assert paths == ["models", "getmodels"]
        c.models()
        assert emu.requests[-1].path.endswith("/getmodels") and len(emu.requests) == 3


def test_unknown_model_says_how_to_list_models(client, records):
    # The service answers 400 (param model, code model_not_found) or 404; both say what to do.
    with pytest.raises((NotFoundError, BadRequestError)) as info:
        client.complete("x", model="text-nope-001")
    assert "client.models()" in str(info.value) and info.value.request_id
    assert info.value.code == "model_not_found"
    assert records[-1].status == "error" and records[-1].http_status in (400, 404)
    assert records[-1].error.startswith(type(info.value).__name__ + ": ")


def test_bad_request_from_the_service_names_the_param(client):
    with pytest.raises(BadRequestError) as info:
        client.complete("x", max_tokens=100_000)  # over the context length: only the service knows
    assert info.value.status_code == 400


def test_wrong_key_is_an_authentication_error_that_says_what_to_do(emulator, records):
    c = Client(api_key="pk-wrong-key-0000000000", base_url=emulator.url, on_call=records.append)
    with pytest.raises(AuthenticationError) as info:
        c.complete("x")
    assert "PIENTEGER_API_KEY" in str(info.value) and "%pienteger login" in str(info.value)
    assert "pk-wrong-key-0000000000" not in str(info.value)
    assert records[-1].status == "error" and records[-1].http_status == 401


def test_missing_key_raises_at_request_time_not_construction(emulator):
    c = Client(base_url=emulator.url)
    with pytest.raises(ConfigurationError, match="PIENTEGER_API_KEY"):
        c.complete("x")
    with pytest.raises(ConfigurationError):
        c.require_key()
    with pytest.raises(ConfigurationError):
        c.models()
    assert emulator.requests == []


def test_settings_come_from_the_environment_at_construction(env_emulator, monkeypatch):
    c = Client()
    assert c.base_url == env_emulator.url and c.complete("x", max_tokens=1).text is not None
    monkeypatch.setenv("PIENTEGER_MODEL", "text-ada-001")
    config.set_kernel("max_retries", "5")
    c2 = Client()
    assert c2.default_model == "text-ada-001" and c2.max_retries == 5
    assert Client(max_retries=0).max_retries == 0


def test_key_never_over_plain_http_to_a_remote_host(records):
    c = Client(api_key=TEST_KEY, base_url="http://api.example.com/oaiv1", on_call=records.append)
    with pytest.raises(ConfigurationError, match="plain http"):
        c.complete("x")
    with pytest.raises(ConfigurationError, match="plain http"):
        c.stream("x")
    with pytest.raises(ConfigurationError, match="plain http"):
        c.models()
    assert records == []  # nothing was sent, so there was no call to record
    assert Client(api_key=TEST_KEY, base_url="http://localhost:1/oaiv1").request_preview("x")["url"]
    with pytest.raises(ConfigurationError):
        Client(api_key=TEST_KEY, base_url="ftp://example.com")


def test_error_bodies_html_and_empty_give_sensible_messages(client, emulator):
    emulator.queue_fault("status", status=502, body="html")
    with pytest.raises(InternalServerError, match="HTML") as info:
        Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0).complete("x")
    assert info.value.status_code == 502
    emulator.queue_fault("status", status=503, body="empty")
    with pytest.raises(InternalServerError, match="empty body"):
        Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0).complete("x")


def test_documented_token_estimator():
    from pienteger_nb.client.results import estimate_tokens

    assert estimate_tokens("Hello, world!  ok") == 5
    assert estimate_tokens(["a b", "c"]) == 3


def test_recorder_default_disabled_and_failing(emulator):
    seen: list[CallRecord] = []
    previous = client_module.set_default_recorder(seen.append)
    try:
        Client(api_key=TEST_KEY, base_url=emulator.url).complete("x", max_tokens=1)
        assert len(seen) == 1
        Client(api_key=TEST_KEY, base_url=emulator.url, on_call=False).complete("x", max_tokens=1)
        assert len(seen) == 1
    finally:
        assert client_module.set_default_recorder(previous) == seen.append

    def broken(rec: CallRecord) -> None:
        raise RuntimeError("ledger is down")

    c = Client(api_key=TEST_KEY, base_url=emulator.url, on_call=broken)
    assert c.complete("x", max_tokens=1).text is not None  # the call still succeeds


def test_with_options_and_request_preview(client, emulator):
    magic = client.with_options(source="magic", max_retries=0)
    assert magic.source == "magic" and magic.max_retries == 0 and magic.base_url == client.base_url
    with pytest.raises(TypeError):
        client.with_options(nope=1)
    preview = client.request_preview("hi", max_tokens=3, stream=True)
    assert preview["method"] == "POST" and preview["url"] == emulator.url + "/completions"
    assert preview["json"]["stream_options"] == {"include_usage": True}
    assert TEST_KEY not in repr(preview) and preview["headers"]["X-Api-Key"].startswith("****")
    with pytest.raises(ValueError, match="best_of"):
        client.request_preview("hi", stream=True, best_of=2)
    assert emulator.requests == []


def test_one_session_per_thread_shared_client(client, emulator, records):
    import gc

    errors: list[BaseException] = []
    all_done = threading.Barrier(9, timeout=60)  # 8 workers + this thread
    release = threading.Event()

    def work() -> None:
        try:
            for _ in range(5):
                client.complete("x", max_tokens=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        all_done.wait()
        release.wait(60)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    all_done.wait()
    sessions_while_alive = len(client._sessions)
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(records) == 40 and all(r.status == "ok" for r in records)
    assert sessions_while_alive == 8  # one pooled Session per thread
    del t, threads
    gc.collect()
    assert len(client._sessions) == 0  # threads gone: their sessions were dropped (and closed)
    client.complete("x", max_tokens=1)
    assert len(client._sessions) == 1
    client.close()
    assert len(client._sessions) == 0


def test_plain_call_connection_refused_is_a_connection_error(records):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    sleeps: list[float] = []
    c = Client(api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}/oaiv1", max_retries=2,
               sleep=sleeps.append, on_call=records.append)
    with pytest.raises(APIConnectionError) as info:
        c.complete("x")
    assert isinstance(info.value.__cause__, Exception)
    assert len(sleeps) == 2 and records[-1].attempts == 3 and records[-1].http_status is None


def test_key_never_in_str_repr_or_logs(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    records: list[CallRecord] = []
    things: list[object] = []
    c = Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append, sleep=lambda s: None)
    things += [c, c._key]
    things.append(c.complete("hello", max_tokens=3))
    things += c.models()
    emulator.queue_fault("status", status=429, retry_after=0)
    emulator.queue_fault("status", status=500)
    things.append(c.complete("hello", max_tokens=3))  # two retries
    emulator.queue_fault("status", status=500, times=3)
    with pytest.raises(InternalServerError) as info:
        c.complete("x")
    things += [info.value, info.value.__cause__]
    with c.stream("hello", max_tokens=5) as s:
        things += list(s)
    things += [s, s.completion]
    emulator.queue_fault("cut", after=1)
    from pienteger_nb import StreamError

    with pytest.raises(StreamError) as sinfo, c.stream("hello", max_tokens=20) as s2:
        for _ in s2:
            pass
    things += [sinfo.value, s2]
    with pytest.raises(AuthenticationError) as ainfo:
        Client(api_key=TEST_KEY + "x", base_url=emulator.url).complete("x")
    things.append(ainfo.value)
    things += records
    assert caplog.records, "the run logged nothing at DEBUG"
    for thing in things:
        assert TEST_KEY not in str(thing) and TEST_KEY not in repr(thing)
    for record in caplog.records:
        assert TEST_KEY not in record.getMessage()
        assert TEST_KEY not in str(record.args)
    assert any(r.name == "pienteger_nb" and "attempt" in r.getMessage() for r in caplog.records)


def test_redirects_are_not_followed_so_the_key_stays_put(records):
    """requests would resend X-Api-Key to a redirect target: the client refuses to follow."""
    import http.server

    hits: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        c = Client(api_key=TEST_KEY, base_url=f"http://127.0.0.1:{server.server_port}/oaiv1",
                   on_call=records.append, max_retries=0)
        with pytest.raises(PientegerError, match="PIENTEGER_BASE_URL") as info:
            c.complete("x")
        assert info.value.status_code == 307 and hits == ["/oaiv1/completions"]
        assert records[-1].status == "error" and records[-1].http_status == 307
    finally:
        thread.join(10)
        server.server_close()


def test_a_failing_recorder_is_logged_without_the_key(emulator, caplog):
    def broken(rec: CallRecord) -> None:
        raise RuntimeError(f"cannot store {TEST_KEY}")

    caplog.set_level(logging.DEBUG)
    Client(api_key=TEST_KEY, base_url=emulator.url, on_call=broken).complete("x", max_tokens=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("recording the call failed" in w for w in warnings)
    assert all(TEST_KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("kind", "message"), [("malformed", "not valid JSON"), ("cut", "dropped")])
def test_broken_plain_answers_are_connection_errors_and_not_retried(emulator, records, kind, message):
    sleeps: list[float] = []
    emulator.queue_fault(kind)
    c = Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append, sleep=sleeps.append)
    with pytest.raises(APIConnectionError, match=message):
        c.complete("x", max_tokens=5)
    # the body had started: the service may have done the work, so no retry
    assert sleeps == [] and records[-1].attempts == 1 and records[-1].http_status == 200
    assert records[-1].status == "error" and records[-1].request_id


def test_proxy_settings_come_from_the_environment(emulator, monkeypatch):
    # Read once per session (not per request): HTTP_PROXY is honoured, and NO_PROXY too.
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    with (
        Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0, on_call=False) as c,
        pytest.raises(APIConnectionError, match="proxy"),
    ):
        c.complete("x", max_tokens=1)
    assert emulator.requests == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0, on_call=False) as c:
        assert c.complete("x", max_tokens=1).choices
    assert len(emulator.requests) == 1


def test_error_bodies_that_echo_the_key_never_show_it(client, emulator):
    # A service (or a proxy) may quote the key back in any field of its error body.
    emulator.queue_fault("status", status=400, message=f"bad key {TEST_KEY}", code=TEST_KEY, type=TEST_KEY)
    with pytest.raises(BadRequestError) as info:
        client.complete("x")
    err = info.value
    assert all(TEST_KEY not in str(v) for v in (err, repr(err), err.message, err.code, err.type))
    assert "****" in err.message


def test_a_key_with_stray_characters_is_refused_without_showing_it(emulator, records):
    import traceback

    # Pasted keys often carry a newline; surrounding whitespace is dropped, anything else refused.
    assert Client(api_key=f" {TEST_KEY}\n", base_url=emulator.url).complete("x", max_tokens=1).choices
    for bad in (f"{TEST_KEY[:8]}\n{TEST_KEY[8:]}", f"{TEST_KEY[:8]}€{TEST_KEY[8:]}"):
        c = Client(api_key=bad, base_url=emulator.url, on_call=records.append)
        with pytest.raises(ConfigurationError, match="API key") as info:
            c.complete("x")
        shown = "".join(traceback.format_exception(info.value))
        assert TEST_KEY[8:] not in shown and repr(bad)[1:-1] not in shown
    assert records == [] and len(emulator.requests) == 1


def test_key_never_over_plain_http_through_a_remote_proxy(emulator, monkeypatch, records):
    # A plain-http URL through a proxy hands the whole request, X-Api-Key included, to the proxy.
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    c = Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0, on_call=records.append)
    with pytest.raises(ConfigurationError, match="proxy.example.com"):
        c.complete("x")
    assert records == []


def test_close_closes_pooled_connections_even_while_a_stream_is_kept(client, emulator):
    import gc
    import socket

    def open_to_emulator() -> list[socket.socket]:
        """Client sockets still open to the emulator (its own sockets have it as their local end)."""
        found = []
        for obj in gc.get_objects():
            if isinstance(obj, socket.socket) and obj.family in (socket.AF_INET, socket.AF_INET6) \
                    and obj.fileno() != -1:
                try:
                    if obj.getpeername()[1] == emulator.port:
                        found.append(obj)
                except OSError:  # a listening or unconnected socket
                    pass
        return found

    with client.stream("Hi", max_tokens=5) as s:  # finished: its connection goes back to the pool
        list(s)
    assert len(open_to_emulator()) == 1
    client.close()
    assert open_to_emulator() == [] and s.completion is not None


def test_a_base_url_without_the_api_root_says_to_check_it(emulator):
    root = emulator.url.rsplit("/oaiv1", 1)[0]  # a common slip: the host without /oaiv1
    c = Client(api_key=TEST_KEY, base_url=root, max_retries=0)
    for call in (lambda: c.complete("x"), c.models, lambda: c.model("text-ada-001")):
        with pytest.raises(NotFoundError, match="PIENTEGER_BASE_URL"):
            call()
    emulator.queue_fault("status", status=404, body="html")  # no code: model or path, it cannot say
    with pytest.raises(NotFoundError, match=r"model name.*PIENTEGER_BASE_URL"):
        Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0).complete("x")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/oaiv1?x=1", "https://api.pienteger.com/oaiv1#top"])
def test_a_base_url_with_a_query_or_fragment_is_refused(url):
    with pytest.raises(ConfigurationError, match="query"):
        Client(api_key=TEST_KEY, base_url=url)


@pytest.mark.parametrize(("body", "message"), [
    (b'{"choices":[{"text":5,"index":0}]}', "unexpected shape"),
    (b'{"choices":[{"text":"a","index":0}],"created":"yesterday"}', "unexpected shape"),
    (b'{"error":{"message":"the quota is used up","code":"insufficient_quota"}}', "the quota is used up"),
])
def test_a_plain_answer_of_the_wrong_shape_is_our_error(records, raw_server, body, message):
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
    c = Client(api_key=TEST_KEY, base_url=url, on_call=records.append, max_retries=0)
    with pytest.raises(APIConnectionError, match=message):
        c.complete("x")
    assert [r.status for r in records] == ["error"]


@pytest.mark.parametrize("body", [b'{"object":"list","data":5}', b'"text-davinci-003"', b"[1, 2]"])
def test_a_model_answer_of_the_wrong_shape_is_our_error(raw_server, body):
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body), connections=2)  # models(), model(id)
    c = Client(api_key=TEST_KEY, base_url=url, max_retries=0)
    with pytest.raises(APIConnectionError, match="unexpected shape"):
        c.models()
    with pytest.raises(APIConnectionError, match="unexpected shape"):
        c.model("text-davinci-003")
