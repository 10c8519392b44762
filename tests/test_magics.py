"""%%pienteger in a real InteractiveShell against the emulator: options on the wire,
interpolation, -o, formats, dry run, one-line failures, throttled streaming, interrupts,
ledger rows. Every captured output is scanned for the key."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import TEST_KEY
from IPython.utils.capture import CapturedIO, capture_output

from pienteger_nb import config
from pienteger_nb.notebook.failures import CellFailure, CellInterrupted
from pienteger_nb.types import Completion


class Run:
    """One run_cell: the result, what was captured, and every publish call seen."""

    def __init__(self, res: Any, cap: CapturedIO, published: list[dict[str, Any]]):
        self.res, self.cap, self.published = res, cap, published

    @property
    def text(self) -> str:
        return self.cap.stdout + self.cap.stderr

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    @property
    def streamed(self) -> list[str]:
        """The running-text messages (before the formatted final output)."""
        return [p["data"]["text/plain"] for p in self.published if not p["metadata"]]

    def final(self) -> dict[str, Any]:
        """The last publish before the usage line: the finished output."""
        finals = [
            p
            for p in self.published
            if "pienteger" in p["metadata"] and "usage_line" not in p["metadata"]["pienteger"]
        ]
        return finals[-1]


def run(ip: Any, source: str, *, store_history: bool = False, raise_on_update: int | None = None) -> Run:
    """Run a cell, capturing everything; asserts the key appears nowhere in what was captured."""
    published: list[dict[str, Any]] = []
    with capture_output() as cap:
        pub = ip.display_pub
        original = pub.publish
        updates = 0

        def publish(data: Any, metadata: Any = None, *args: Any, update: bool = False, **kw: Any) -> Any:
            nonlocal updates
            if update:
                updates += 1
                if updates == raise_on_update:  # as if Interrupt Kernel arrived right here
                    raise KeyboardInterrupt
            published.append({"data": data, "metadata": metadata or {}, "update": update})
            return original(data, metadata, *args, update=update, **kw)

        pub.publish = publish
        try:
            res = ip.run_cell(source, store_history=store_history, silent=not store_history)
        finally:
            del pub.publish
    blob = cap.stdout + cap.stderr + json.dumps(published, default=str) + repr(res.error_in_exec)
    assert TEST_KEY not in blob and TEST_KEY[:-4] not in blob
    return Run(res, cap, published)


class Ticker:
    """A fake clock: every reading moves it ``step`` seconds on."""

    def __init__(self, step: float):
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def body(emulator: Any) -> dict[str, Any]:
    return emulator.requests[-1].body


# --- Loading -------------------------------------------------------------------------------


def test_load_ext_is_cheap_and_registers_both_magics() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'pienteger_nb')\n"
        "m = ip.magics_manager.magics\n"
        "print('pienteger' in m['line'], 'pienteger' in m['cell'],"
        " 'pandas' in sys.modules, 'ipywidgets' in sys.modules, 'requests' in sys.modules)\n"
        "ip.run_line_magic('unload_ext', 'pienteger_nb')\n"
        "print('pienteger' in ip.magics_manager.magics['cell'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False", "False", "False", "False"]


def test_help_is_the_docstring_with_examples(ip: Any, magics: Any) -> None:
    doc = magics.pienteger.__doc__
    for option in (
        "--max-tokens",
        "--stop",
        "--no-interpolate",
        "--dry-run",
        "-o NAME",
        "examples:",
        "login",
    ):
        assert option in doc
    r = run(ip, "%pienteger help")
    assert "%%pienteger -m text-ada-001" in r.cap.stdout
    r = run(ip, "%%pienteger?")
    assert "%%pienteger [-m MODEL]" in r.cap.stdout and "examples:" in r.cap.stdout


# --- Options on the wire -------------------------------------------------------------------


def test_every_option_reaches_the_wire(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(
        ip,
        '%%pienteger -m text-ada-001 -t 0.5 --max-tokens 12 --top-p 0.9 --n 2 --stop "\\n" --stop "###" '
        "--suffix 'the end' --echo --logprobs 2 --seed 7 --no-stream -f text\nSay hi",
    )
    assert r.res.success, r.text
    sent = dict(body(env_emulator))
    assert sent.pop("stream", False) is False
    assert sent == {
        "model": "text-ada-001",
        "prompt": "Say hi",
        "temperature": 0.5,
        "max_tokens": 12,
        "top_p": 0.9,
        "n": 2,
        "stop": ["\n", "###"],
        "suffix": "the end",
        "echo": True,
        "logprobs": 2,
        "seed": 7,
    }


def test_quotes_are_removed_and_escapes_read(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%%pienteger --stop '\\t' --suffix \"it's done\\n\" --max-tokens 3\nx")
    assert r.res.success, r.text
    sent = body(env_emulator)
    assert sent["stop"] == "\t"
    assert sent["suffix"] == "it's done\n"
    assert sent["stream"] is True


def test_quotes_inside_values_are_escaped_as_in_a_shell(ip: Any, magics: Any, env_emulator: Any) -> None:
    line = r"""--suffix "say \"hi\" now" --stop 'it'\''s' --stop "\"" --stop a\ b --max-tokens 3"""
    r = run(ip, f"%%pienteger {line}\nx")
    assert r.res.success, r.text
    sent = body(env_emulator)
    assert sent["suffix"] == 'say "hi" now'
    assert sent["stop"] == ["it's", '"', "a b"]


def test_stop_and_suffix_values_may_start_with_a_dash(ip: Any, magics: Any, env_emulator: Any) -> None:
    # argparse alone reads "---" or "-x" after --stop as an unknown option ("expected one argument").
    r = run(ip, '%%pienteger --max-tokens 3 --stop "---" --stop -- --stop "-x" --suffix "-- the end"\nx')
    assert r.res.success, r.text
    sent = body(env_emulator)
    assert (sent["stop"], sent["suffix"]) == (["---", "--", "-x"], "-- the end")


def test_defaults_come_from_config_then_environment(
    ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PIENTEGER_MODEL", "text-curie-001")
    run(ip, "%%pienteger\nx")
    assert body(env_emulator)["model"] == "text-curie-001"
    run(ip, "%pienteger config model=text-babbage-001 temperature=0.2 max_tokens=5 stream=false")
    run(ip, "%%pienteger\nx")
    sent = body(env_emulator)
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("text-babbage-001", 0.2, 5)
    assert sent.get("stream") in (None, False)
    run(ip, "%%pienteger -m text-ada-001 -t 1 --max-tokens 3\nx")
    sent = body(env_emulator)
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("text-ada-001", 1.0, 3)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("-t warm", "-t/--temperature"),
        ("--max-tokens many", "--max-tokens"),
        ("--bogus", "--bogus"),
        ("-f xml", "invalid choice"),
        ("-o 1bad", "-o needs a variable name"),
        ("-o class", "-o needs a variable name"),
        ('--suffix "unclosed', "No closing quotation"),
    ],
)
def test_a_bad_option_is_one_line_and_fails_the_cell(
    ip: Any, magics: Any, env_emulator: Any, line: str, fragment: str
) -> None:
    r = run(ip, f"%%pienteger {line}\nx")
    assert r.res.success is False
    assert len(r.lines) == 1 and fragment in r.lines[0], r.text
    assert env_emulator.requests == []


def test_a_value_out_of_range_is_refused_before_sending(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%%pienteger -t 5\nx")
    assert r.res.success is False
    assert len(r.lines) == 1 and "temperature" in r.lines[0], r.text
    assert env_emulator.requests == []


# --- Interpolation -------------------------------------------------------------------------


def test_interpolation_in_the_magic(ip: Any, magics: Any, env_emulator: Any) -> None:
    ip.user_ns.update(topic="cats", rows=["a", "b"], d={"k": "v"}, x=41, os=__import__("os"))
    prompt = '{topic} {rows[1]} {d[\'k\']} {os.environ} {x.__class__} {nope} {{lit}} {"j": {"k": 1}}'
    run(ip, "%%pienteger --max-tokens 2\n" + prompt)
    assert body(env_emulator)["prompt"] == 'cats b v {os.environ} {x.__class__} {nope} {lit} {"j": {"k": 1}}'
    run(ip, "%%pienteger --max-tokens 2 --no-interpolate\n" + prompt)
    assert body(env_emulator)["prompt"] == prompt


def test_option_values_follow_the_prompt_rules_not_ipython_expansion(
    ip: Any, magics: Any, env_emulator: Any
) -> None:
    # IPython's own $name / {expression} expansion of magic lines would turn $5 into 5 and
    # evaluate {x.__class__}; option values are filled like the prompt instead.
    ip.user_ns.update(x=3, topic="text-ada-001", os=__import__("os"))
    run(ip, '%%pienteger -m {topic} --max-tokens {x} --suffix "costs $5 {x.__class__} {1+1} {os.sep}"\nHi')
    sent = body(env_emulator)
    assert (sent["model"], sent["max_tokens"]) == ("text-ada-001", 3)
    assert sent["suffix"] == "costs $5 {x.__class__} {1+1} {os.sep}"
    run(ip, '%%pienteger --no-interpolate --max-tokens 1 --stop "{{" --suffix "$x {x}"\nHi')
    sent = body(env_emulator)
    assert (sent["stop"], sent["suffix"]) == ("{{", "$x {x}")


# --- Output ----------------------------------------------------------------------------------


def test_o_stores_the_completion_and_returns_nothing(ip: Any, magics: Any, env_emulator: Any) -> None:
    before = dict(ip.user_ns["Out"])
    r = run(ip, "%%pienteger --max-tokens 8 -o answer\nHello", store_history=True)
    assert r.res.success and r.res.result is None
    assert ip.user_ns["Out"] == before
    answer = ip.user_ns["answer"]
    assert isinstance(answer, Completion)
    assert answer.request_id == r.final()["metadata"]["pienteger"]["request_id"]
    assert r.final()["data"]["text/plain"] == answer.text


@pytest.mark.parametrize(
    ("fmt", "mimes"),
    [
        ("markdown", {"text/markdown", "text/plain"}),
        ("text", {"text/plain"}),
        ("code", {"text/html", "text/plain"}),
        ("html", {"text/html", "text/plain"}),
        ("json", {"application/json", "text/plain"}),
    ],
)
def test_each_format_with_provenance(
    ip: Any, magics: Any, env_emulator: Any, fmt: str, mimes: set[str]
) -> None:
    env_emulator.natural_end = False  # the text runs to max_tokens: the counts below are exact
    r = run(ip, f"%%pienteger --max-tokens 10 -f {fmt}\nWrite something")
    assert r.res.success, r.text
    final = r.final()
    assert set(final["data"]) == mimes
    info = final["metadata"]["pienteger"]
    assert info["format"] == fmt
    assert info["model"] and info["request_id"] and info["finish_reason"]
    assert info["usage"]["completion_tokens"] == 10
    assert info["request_id"] == env_emulator.requests[-1].headers.get("X-Request-Id", info["request_id"])
    json.dumps(final["metadata"])
    usage = r.published[-1]
    assert usage["metadata"]["pienteger"]["usage_line"] is True
    assert "→ 10 tokens" in usage["data"]["text/plain"]


def test_the_usage_line_can_be_turned_off(ip: Any, magics: Any, env_emulator: Any) -> None:
    run(ip, "%pienteger config show_usage=false")
    r = run(ip, "%%pienteger --max-tokens 3\nx")
    assert not any("usage_line" in p["metadata"].get("pienteger", {}) for p in r.published)


def test_no_stream_shows_one_output(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%%pienteger --no-stream --max-tokens 5\nx")
    assert r.res.success
    assert "stream" not in body(env_emulator) or body(env_emulator)["stream"] is False
    assert [p["update"] for p in r.published] == [False, False]  # the output, the usage line


def test_several_choices_stream_and_show(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%%pienteger --n 2 --max-tokens 4 -f text -o res\nx")
    assert r.res.success, r.text
    res = ip.user_ns["res"]
    assert len(res.choices) == 2
    final = r.final()["data"]["text/plain"]
    assert res.choices[0].text in final and res.choices[1].text in final


# --- Dry run -------------------------------------------------------------------------------


def test_dry_run_shows_the_request_and_sends_nothing(ip: Any, magics: Any, env_emulator: Any) -> None:
    ip.user_ns["topic"] = "owls"
    r = run(ip, '%%pienteger --dry-run -m text-ada-001 --stop "\\n" --max-tokens 9\nAbout {topic}')
    assert r.res.success, r.text
    assert env_emulator.requests == []
    shown = r.published[-1]["data"]["text/plain"]
    assert f"POST {env_emulator.url}/completions" in shown
    assert "X-Api-Key: ****" in shown
    assert '"prompt": "About owls"' in shown and '"max_tokens": 9' in shown and '"\\n"' in shown


# --- Failures ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["401", "400", "429-quota", "500", "refused", "cut-body", "no-key"])
def test_api_errors_are_one_line_and_fail_the_cell(
    ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any, case: str
) -> None:
    line = "--max-tokens 4"
    if case == "401":
        monkeypatch.setenv("PIENTEGER_API_KEY", "pk-wrong-000000000000000000")
        expected = ["HTTP 401", "request id", "%pienteger login"]
    elif case == "400":
        line = "--max-tokens 5000"  # over the model's context: the service says 400
        expected = ["HTTP 400", "request id", "context length"]
    elif case == "429-quota":
        env_emulator.queue_fault(
            "status", status=429, code="insufficient_quota", message="You exceeded your quota."
        )
        expected = ["HTTP 429", "quota", "retrying will not help"]
    elif case == "500":
        run(ip, "%pienteger config max_retries=0")
        env_emulator.queue_fault("status", status=500)
        expected = ["HTTP 500", "try again later"]
    elif case == "refused":
        run(ip, "%pienteger config max_retries=0")
        monkeypatch.setenv("PIENTEGER_BASE_URL", f"http://127.0.0.1:{_free_port()}/oaiv1")
        expected = ["could not reach the service", "%pienteger check"]
    elif case == "cut-body":  # connected, then the answer broke: not "could not connect"
        run(ip, "%pienteger config max_retries=0")
        env_emulator.queue_fault("malformed")
        line += " --no-stream"
        expected = ["failed: the service answered HTTP 200 with a body that is not valid JSON"]
    else:
        monkeypatch.delenv("PIENTEGER_API_KEY")
        expected = ["no Pienteger API key", "%pienteger login"]
    r = run(ip, f"%%pienteger {line}\nHello")
    assert r.res.success is False
    assert isinstance(r.res.error_in_exec, CellFailure)
    assert len(r.lines) == 1, r.text
    for fragment in expected:
        assert fragment in r.lines[0]
    assert "Traceback" not in r.text
    assert "could not connect" not in r.text


@pytest.mark.parametrize("stream", [True, False])
def test_a_timeout_gives_the_magic_advice_once(ip: Any, magics: Any, env_emulator: Any, stream: bool) -> None:
    run(ip, "%pienteger config timeout=0.2 max_retries=0")
    env_emulator.queue_fault("stall", after=2)  # streamed: two events, then silence; plain: silence
    r = run(ip, "%%pienteger --max-tokens 20" + ("" if stream else " --no-stream") + "\nHello")
    assert r.res.success is False
    (line,) = r.lines
    assert "no answer in time" in line and line.endswith("%pienteger config timeout=SECONDS, or try again")
    assert ".text" not in line and "Client(" not in line and line.count("try again") == 1, line


def test_debug_shows_the_full_traceback(ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PIENTEGER_API_KEY", "pk-wrong-000000000000000000")
    run(ip, "%pienteger config debug=true")
    r = run(ip, "%%pienteger --max-tokens 4\nHello")
    assert r.res.success is False
    assert r.res.error_in_exec.__class__.__name__ == "AuthenticationError"
    assert len(r.lines) > 3 and "AuthenticationError" in r.text


@pytest.mark.parametrize("fault", ["cut", "error_event", "malformed", "no_done"])
def test_a_stream_broken_midway_keeps_the_partial_text(
    ip: Any, magics: Any, env_emulator: Any, fault: str
) -> None:
    env_emulator.queue_fault(fault, after=4)
    r = run(ip, "%%pienteger --max-tokens 30\nHello")
    assert r.res.success is False
    assert len(r.lines) == 1 and "Pienteger" in r.lines[0], r.text
    assert "Traceback" not in r.text
    last = r.published[-1]
    assert last["data"]["text/plain"].endswith("[stream broken]")
    assert last["metadata"]["pienteger"]["status"] == "error"
    assert len(last["data"]["text/plain"]) > len("[stream broken]") + 1  # partial text kept


# --- Streaming display ---------------------------------------------------------------------


def test_a_stream_broken_before_any_text_does_not_claim_text_is_kept(
    ip: Any, magics: Any, env_emulator: Any
) -> None:
    env_emulator.queue_fault("error_event", after=0)
    r = run(ip, "%%pienteger --max-tokens 20\nHello")
    assert r.res.success is False
    assert len(r.lines) == 1 and "stream broke" in r.lines[0], r.text
    assert "kept above" not in r.lines[0] and "no text had arrived" in r.lines[0]


def test_streaming_updates_are_throttled_and_the_last_state_lands(
    ip: Any, magics: Any, env_emulator: Any
) -> None:
    clock = Ticker(0.01)  # every token "takes" 10 ms: 100 tokens, 1 simulated second
    magics.clock = clock
    r = run(ip, "%%pienteger --max-tokens 100 -f text -o res\nTell a story")
    assert r.res.success, r.text
    streamed = r.streamed
    assert 2 <= len(streamed) <= clock.now / 0.05 + 1  # at most 20 per (simulated) second
    final_text = ip.user_ns["res"].text
    assert streamed[0] and final_text.startswith(streamed[0]) and len(streamed[0]) < len(final_text)
    # first token shown at once (the live usage line reads the clock once when the call starts)
    assert magics.last_view.first_shown_s <= 3 * clock.step
    assert all(final_text.startswith(s) for s in streamed)
    assert r.final()["data"]["text/plain"] == final_text
    assert [p["update"] for p in r.published if not p["metadata"]][:2] == [False, True]  # one output, updated in place
    assert all(set(p["data"]) == {"text/plain"} for p in r.published if not p["metadata"])


def test_markdown_streams_as_markdown(ip: Any, magics: Any, env_emulator: Any) -> None:
    magics.clock = Ticker(0.1)
    r = run(ip, "%%pienteger --max-tokens 10\nx")
    running = [p["data"] for p in r.published if not p["metadata"]]
    assert running and all(d["text/markdown"] == d["text/plain"] for d in running)


def test_with_a_real_clock_a_fast_stream_sends_few_updates(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%%pienteger --max-tokens 300\nTell a long story")
    assert r.res.success
    assert 1 <= len(r.streamed) < 300


def test_an_interrupt_mid_stream_keeps_the_text_and_records_cancelled(
    ip: Any, magics: Any, env_emulator: Any
) -> None:
    magics.clock = Ticker(0.1)  # every token may update
    r = run(ip, "%%pienteger --max-tokens 50\nTell a story", store_history=True, raise_on_update=3)
    assert r.res.success is False
    assert isinstance(r.res.error_in_exec, CellInterrupted)
    assert isinstance(r.res.error_in_exec, KeyboardInterrupt)
    assert len(r.lines) == 1 and "stopped" in r.lines[0], r.text
    last = r.published[-1]
    shown = last["data"]["text/plain"]
    assert shown.endswith("[stopped]") and len(shown) > len("[stopped]") + 1
    assert last["metadata"]["pienteger"]["status"] == "cancelled"
    rows = _ledger()
    assert rows["status"].iloc[-1] == "cancelled" and rows["source"].iloc[-1] == "magic"
    # The connection was closed, not left half-read: the next cell works.
    magics.clock = time.monotonic
    assert run(ip, "%%pienteger --max-tokens 3\nx").res.success


def test_an_interrupt_before_any_text_says_so(ip: Any, magics: Any, env_emulator: Any) -> None:
    import os
    import signal
    import threading

    env_emulator.queue_fault("stall", after=0)  # headers, then nothing until the emulator stops

    def interrupt_once_inside() -> None:  # Interrupt Kernel while the cell waits for the first token
        if env_emulator.wait_for_requests(1, timeout=15):
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt_once_inside)
    thread.start()
    try:
        r = run(ip, "%%pienteger --max-tokens 50\nTell a story")
    finally:
        thread.join(15)
    assert isinstance(r.res.error_in_exec, CellInterrupted)
    assert len(r.lines) == 1 and "no text had arrived" in r.lines[0], r.text
    assert "kept above" not in r.lines[0]
    assert _ledger()["status"].iloc[-1] == "cancelled"


# --- Ledger --------------------------------------------------------------------------------


def _ledger() -> Any:
    from pienteger_nb.ledger.default import default_log

    return default_log().frame()


def test_ledger_rows_carry_source_and_execution_count(
    ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any
) -> None:
    count = ip.execution_count
    assert run(ip, "%%pienteger --max-tokens 3 -m text-ada-001\nx", store_history=True).res.success
    monkeypatch.setenv("PIENTEGER_API_KEY", "pk-wrong-000000000000000000")
    assert not run(ip, "%%pienteger --max-tokens 3\nx", store_history=True).res.success
    rows = _ledger()
    assert list(rows["source"]) == ["magic", "magic"]
    assert list(rows["status"]) == ["ok", "error"]
    assert list(rows["execution_count"]) == [count, count + 1]
    assert rows["model"].iloc[0] == "text-ada-001"
    assert rows["completion_tokens"].iloc[0] == 3
    assert rows["http_status"].iloc[1] == 401


def test_the_key_from_login_never_shows(ip: Any, magics: Any, emulator: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PIENTEGER_BASE_URL", emulator.url)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": TEST_KEY)
    r = run(ip, "%pienteger login")
    assert r.res.success and "****" in r.cap.stdout
    r = run(ip, "%%pienteger --max-tokens 3 -f json\nx")
    assert r.res.success, r.text
    assert config.api_key()[1] == "kernel"


def test_an_empty_cell_is_a_usage_error(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%%pienteger --max-tokens 3\n\n  \n")
    assert r.res.success is False
    assert len(r.lines) == 1 and "the cell is empty" in r.lines[0]
    assert env_emulator.requests == []


def test_terminal_ipython_prints_the_text_once(ip: Any, magics: Any, env_emulator: Any, capsys: Any) -> None:
    from IPython.core.displaypub import DisplayPublisher

    assert type(ip.display_pub) is DisplayPublisher  # what terminal IPython uses
    magics.clock = Ticker(0.1)  # every token goes out: each must print only its new text
    env_emulator.natural_end = False  # the text runs to max_tokens: 20 tokens exactly
    res = ip.run_cell("%%pienteger --max-tokens 20 -o res\nx", silent=True)
    assert res.success
    out = capsys.readouterr().out
    text = ip.user_ns["res"].text
    assert out.startswith(text + "\n")
    assert out.count(text) == 1 and "→ 20 tokens" in out.splitlines()[-1]
    assert TEST_KEY not in out
