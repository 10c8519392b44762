"""complete_many against the emulator: alignment, per-row errors, 429 pacing, interrupt and resume."""

from __future__ import annotations

import itertools
import threading
import warnings
from typing import Any

import pandas as pd
import pytest
from conftest import TEST_KEY

from pienteger_nb import AuthenticationError, Client, ConfigurationError, RateLimitError
from pienteger_nb.batch.pacing import RateLimiter
from pienteger_nb.batch.run import COLUMNS, BatchInterruptedWarning, complete_many

PROMPTS = [f"Tell me about item number {i}." for i in range(12)]


def completions(emulator) -> list:
    return [r for r in emulator.requests if r.path.endswith("/completions")]


def batch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pienteger-batch")]


@pytest.fixture
def records():
    return []


@pytest.fixture
def client(emulator, records):
    return Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append)


class VirtualClock:
    """Moves only when someone sleeps; shared by the limiter and the client's retry waits."""

    def __init__(self) -> None:
        self.t = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def expected_texts(client: Client, prompts: list[str], **params) -> list[str]:
    # Temperature 0: the emulator answers a prompt with the same text every time.
    plain = client.with_options(on_call=False)
    return [plain.complete(p, temperature=0, **params).text for p in prompts]


def test_rows_stay_aligned_with_the_input_when_they_finish_out_of_order(emulator, client):
    # Different prompts generate texts of different lengths; streamed at a token rate, rows
    # finish out of order.
    emulator.tokens_per_second = 2000
    finished: list[int] = []
    df = complete_many(
        PROMPTS,
        client=client,
        concurrency=4,
        progress=False,
        temperature=0,
        max_tokens=40,
        on_row=lambda pos, row: finished.append(pos),
    )
    assert list(df.columns) == list(COLUMNS)
    assert list(df.index) == list(range(len(PROMPTS)))
    assert df["prompt"].tolist() == PROMPTS
    assert (df["status"] == "ok").all() and (df["error"] == "").all()
    emulator.tokens_per_second = None
    assert df["text"].tolist() == expected_texts(client, PROMPTS, max_tokens=40)
    assert sorted(finished) == list(range(len(PROMPTS)))
    for col in ("prompt_tokens", "completion_tokens", "total_tokens", "attempts"):
        assert str(df[col].dtype) == "Int64"
    assert (df["total_tokens"] == df["prompt_tokens"] + df["completion_tokens"]).all()
    assert set(df["usage_source"]) == {"reported"}
    # Every prompt was sent exactly once, with the same parameters.
    sent = completions(emulator)
    assert sorted(r.body["prompt"] for r in sent[: len(PROMPTS)]) == sorted(PROMPTS)


def test_a_series_keeps_its_index(emulator, client):
    s = pd.Series(["Say one.", "Say two.", "Say three."], index=["a", "b", "c"], name="p")
    df = complete_many(s, client=client, progress=False, max_tokens=5, temperature=0)
    assert list(df.index) == ["a", "b", "c"]
    assert df.loc["b", "prompt"] == "Say two."
    assert df.loc["b", "text"] == expected_texts(client, ["Say two."], max_tokens=5)[0]


def test_any_iterable_works_and_empty_input_gives_an_empty_frame(emulator, client):
    df = complete_many((p for p in PROMPTS[:3]), client=client, progress=False, max_tokens=3)
    assert len(df) == 3 and (df["status"] == "ok").all()
    empty = complete_many([], client=client, progress=False)
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0
    assert completions(emulator).__len__() == 3


def test_failed_rows_never_lose_the_others(emulator, client):
    emulator.queue_fault("status", status=400, code="invalid_prompt", times=2)
    prompts = PROMPTS[:6] + [None, 42]
    df = complete_many(prompts, client=client, concurrency=3, progress=False, max_tokens=5)
    assert len(df) == 8
    bad = df[df["status"] == "error"]
    assert len(bad) == 4
    assert df.loc[6, "error"] == "ValueError: the prompt is missing, not a string"
    assert df.loc[7, "error"] == "ValueError: the prompt is an int, not a string"
    http = bad.loc[bad.index < 6, "error"]
    assert len(http) == 2 and all(e.startswith("BadRequestError: ") for e in http)
    ok = df[df["status"] == "ok"]
    assert len(ok) == 4 and ok["text"].str.len().gt(0).all() and (ok["error"] == "").all()
    assert bad["text"].isna().all() and bad["total_tokens"].isna().all()
    # Invalid prompts are never sent; every other row was sent once (400 is not retried).
    assert len(completions(emulator)) == 6


def test_no_key_fails_fast_before_anything_is_sent(emulator):
    client = Client(base_url=emulator.url)
    with pytest.raises(ConfigurationError, match="PIENTEGER_API_KEY"):
        complete_many(PROMPTS, client=client, progress=False)
    assert completions(emulator) == []


def test_a_bad_parameter_fails_once_before_anything_is_sent(emulator, client, capsys):
    with pytest.raises(ValueError, match="temperature"):
        complete_many(PROMPTS, client=client, temperature=7)
    with pytest.raises((TypeError, ValueError), match="max_tokens"):
        complete_many(PROMPTS, client=client, max_token=5)
    with pytest.raises(ValueError, match="concurrency"):
        complete_many(PROMPTS, client=client, concurrency=0)
    with pytest.raises(TypeError, match="not one string"):
        complete_many("one prompt", client=client)
    with pytest.raises(TypeError, match="prompts must be a list or Series of strings, got an int"):
        complete_many(5, client=client)
    with pytest.raises(TypeError, match="resume= takes the DataFrame an earlier complete_many returned"):
        complete_many(PROMPTS, client=client, resume="yes")
    with pytest.raises(TypeError, match="on_row= must be a function"):
        complete_many(PROMPTS, client=client, on_row="print")
    with pytest.raises(TypeError, match="complete_many chooses stream= itself"):
        complete_many(PROMPTS, client=client, stream=True)
    with pytest.raises(TypeError, match="complete_many takes the prompts as its first argument, not prompt="):
        complete_many(PROMPTS, client=client, prompt="x")
    assert completions(emulator) == []
    assert capsys.readouterr().err == ""  # no progress line for a batch that never started


def test_a_wrong_key_stops_the_batch_at_its_first_answer(emulator):
    client = Client(api_key="pk-wrong-key-000000000000", base_url=emulator.url, on_call=False)
    with pytest.raises(AuthenticationError) as info:
        complete_many(PROMPTS * 5, client=client, concurrency=4, progress=False)
    assert "pk-wrong-key" not in str(info.value)
    assert len(completions(emulator)) <= 4 + 4  # the workers' first calls, not 60
    assert batch_threads() == []


def test_a_used_up_quota_stops_the_batch(emulator, client):
    emulator.queue_fault("status", status=429, code="insufficient_quota", times=100)
    with pytest.raises(RateLimitError) as info:
        complete_many(PROMPTS * 5, client=client, concurrency=4, progress=False)
    assert info.value.code == "insufficient_quota"
    assert len(completions(emulator)) <= 4 + 4
    assert batch_threads() == []


def test_a_429_pauses_every_worker_and_the_service_sees_no_storm(emulator, client):
    clock, trace = VirtualClock(), []
    limiter = RateLimiter(concurrency=4, clock=clock.now, sleep=clock.sleep, trace=trace)
    emulator.queue_fault("status", status=429, retry_after=3)
    df = complete_many(PROMPTS, client=client, concurrency=4, progress=False, max_tokens=5, limiter=limiter)
    assert (df["status"] == "ok").all()
    assert sorted(df["attempts"].tolist()) == [1] * (len(PROMPTS) - 1) + [2]
    # The service received each row once plus one retry: nobody hammered it while paused.
    sent = completions(emulator)
    assert len(sent) == len(PROMPTS) + 1
    pauses = [i for i, e in enumerate(trace) if e[0] == "pause"]
    assert len(pauses) == 1 and limiter.rate_limited == 1
    _, at, until = trace[pauses[0]]
    assert until == pytest.approx(at + 3)
    grants = [e for e in trace if e[0] == "grant"]
    assert len(grants) == len(PROMPTS) + 1
    later = [e[1] for e in trace[pauses[0] + 1 :] if e[0] == "grant"]
    # Every start after the 429 was seen (the retry, and whichever rows the other workers
    # took next) waited for the pause to end.
    assert later and min(later) >= until


def test_low_remaining_requests_slow_the_pace_before_any_429(emulator, client):
    # The emulator allows 20 requests a minute and counts down x-ratelimit-remaining-requests;
    # the limiter learns the capacity (20) and, once 4 or fewer remain, spaces starts 3 s apart.
    emulator.rpm = 20
    clock, trace = VirtualClock(), []
    limiter = RateLimiter(concurrency=2, clock=clock.now, sleep=clock.sleep, trace=trace)
    df = complete_many(
        [f"q{i}" for i in range(20)],
        client=client,
        concurrency=2,
        progress=False,
        max_tokens=2,
        limiter=limiter,
    )
    assert (df["status"] == "ok").all() and (df["attempts"] == 1).all()
    assert len(completions(emulator)) == 20 and limiter.rate_limited == 0
    starts = [e[1] for e in trace if e[0] == "grant"]
    assert starts[:14] == [0.0] * 14  # plenty left: no waiting
    # At most two starts (one per worker) slip out before the low count is seen.
    assert all(b - a >= 3.0 - 1e-9 for a, b in itertools.pairwise(starts[-2:]))
    assert starts[-1] >= 6.0


def test_an_rpm_limit_spaces_every_start(emulator, client):
    clock, trace = VirtualClock(), []
    limiter = RateLimiter(rpm=120, concurrency=4, clock=clock.now, sleep=clock.sleep, trace=trace)
    complete_many(PROMPTS[:6], client=client, concurrency=4, progress=False, max_tokens=3, limiter=limiter)
    starts = [e[1] for e in trace if e[0] == "grant"]
    assert len(starts) == 6
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(starts))


def test_interrupt_returns_finished_rows_and_resume_does_only_the_rest(emulator, client, records):
    # Deterministic: 5 invalid rows fail at once, the next 3 requests are answered (a harmless
    # keep-alive fault), every later request stalls. So exactly 8 rows can finish, and the
    # on_row hook interrupts at the 8th, with the workers stuck in a stalled stream or about to be.
    prompts = [None] * 5 + [f"Row {i} says hello." for i in range(5, 30)]
    emulator.queue_fault("keepalive", times=3)
    emulator.queue_fault("stall", after=1, times=100)
    seen: list[int] = []

    def interrupt_at_eighth(pos: int, row: dict) -> None:
        seen.append(pos)
        if len(seen) == 8:
            raise KeyboardInterrupt

    with pytest.warns(BatchInterruptedWarning, match=r"3 of 30 rows ok.*resume=df"):
        df = complete_many(
            prompts,
            client=client,
            concurrency=2,
            progress=False,
            max_tokens=4,
            temperature=0,
            on_row=interrupt_at_eighth,
        )
    assert batch_threads() == []  # no worker left running: the stalled streams were closed
    assert len(df) == 30 and list(df.index) == list(range(30))
    assert df["status"].value_counts().to_dict() == {"ok": 3, "error": 5, "cancelled": 22}
    assert df.loc[:4, "status"].eq("error").all()
    cancelled = df[df["status"] == "cancelled"]
    assert cancelled["text"].isna().all() and (cancelled["error"] == "cancelled").all()
    # 3 answered, then 1 or 2 stalled: the worker that finished the 3rd answer may or may not have
    # sent its next request before the interrupt; none is sent after it.
    sent = len(completions(emulator))
    assert sent in (4, 5)
    assert sorted(r.status for r in records) == ["cancelled"] * (sent - 3) + ["ok"] * 3

    emulator.reset()  # no more faults
    done = complete_many(
        prompts, client=client, concurrency=4, progress=False, max_tokens=4, temperature=0, resume=df
    )
    assert done["status"].value_counts().to_dict() == {"ok": 25, "error": 5, "cancelled": 0}
    # Only the rows that were not ok were done again (invalid ones fail again without a request).
    assert len(completions(emulator)) == 22
    kept = df["status"] == "ok"
    pd.testing.assert_frame_equal(done[kept], df[kept], check_categorical=False)
    assert done.loc[5:, "text"].tolist() == expected_texts(client, prompts[5:], max_tokens=4)
    # Every call, cancelled ones included, reached the ledger hook marked as a batch call.
    assert {r.source for r in records} == {"batch"}
    assert sum(r.status == "ok" for r in records) == 25


def test_resume_with_prompts_taken_from_the_frame_and_refusing_other_prompts(emulator, client):
    df = complete_many(PROMPTS[:3], client=client, progress=False, max_tokens=3)
    again = complete_many(None, client=client, progress=False, resume=df)
    assert again["text"].tolist() == df["text"].tolist()
    assert len(completions(emulator)) == 3
    with pytest.raises(ValueError, match="resume="):
        complete_many(PROMPTS[:4], client=client, progress=False, resume=df)


def test_every_row_is_a_ledger_row_with_source_batch(env_emulator):
    import pienteger_nb

    df = complete_many(PROMPTS[:5], progress=False, max_tokens=3)
    assert (df["status"] == "ok").all()
    ledger = pienteger_nb.usage()
    rows = ledger[ledger["source"] == "batch"]
    assert len(rows) == 5
    assert set(rows["status"]) == {"ok"}
    assert sorted(rows["request_id"]) == sorted(df["request_id"])


def test_progress_line_on_stderr_in_a_terminal(emulator, client, capsys):
    complete_many(PROMPTS[:3], client=client, max_tokens=3)
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r" in err and "batch 3/3" in err.split("\r")[-1]
    assert TEST_KEY not in err


def test_the_key_is_nowhere_in_the_result(emulator, client):
    emulator.queue_fault("status", status=500, times=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = complete_many(
            PROMPTS[:3],
            client=client.with_options(max_retries=0, on_call=False),
            progress=False,
            max_tokens=3,
        )
    assert (df["status"] == "error").all()
    assert TEST_KEY not in df.to_csv() and TEST_KEY[-20:] not in repr(df)


def test_progress_bar_in_a_kernel_counts_every_row(emulator, client, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from ipywidgets.widgets import widget
    from traitlets.config import Config

    ip = InteractiveShell.instance()
    monkeypatch.setitem(ip.config, "IPKernelApp", Config())  # what ipykernel's shell carries
    emulator.queue_fault("status", status=400, times=1)
    with capture_output() as cap:
        complete_many(PROMPTS[:5], client=client, concurrency=1, max_tokens=3)
    views = [o.data["application/vnd.jupyter.widget-view+json"] for o in cap.outputs]
    assert len(views) == 1 and cap.stderr == ""
    box = widget._instances[views[0]["model_id"]]
    bar, label = box.children
    assert (bar.value, bar.max, bar.bar_style) == (5, 5, "warning")
    assert label.value.startswith("5/5 · 1 error · ")
    assert TEST_KEY not in str(box.get_state())


def test_rows_stream_except_with_best_of(emulator, client):
    df = complete_many(PROMPTS[:2], client=client, progress=False, max_tokens=3)
    assert (df["status"] == "ok").all()
    assert [r.body["stream"] for r in completions(emulator)] == [True, True]
    emulator.reset()
    df = complete_many(PROMPTS[:2], client=client, progress=False, max_tokens=3, best_of=2)
    assert (df["status"] == "ok").all() and (df["text"].str.len() > 0).all()
    assert [r.body.get("stream", False) for r in completions(emulator)] == [False, False]
    with pytest.raises(ValueError, match="not both"):
        complete_many(PROMPTS[:2], client=client, rpm=60, limiter=RateLimiter())


def test_the_interrupt_warning_points_at_the_caller_s_line(emulator, client):
    # Not at a line inside pienteger_nb or IPython: the warning names the cell or script line.
    def stop(pos: int, row: dict) -> None:
        raise KeyboardInterrupt

    options: dict[str, Any] = {"client": client, "concurrency": 1, "progress": False, "max_tokens": 2, "on_row": stop}
    with pytest.warns(BatchInterruptedWarning) as direct:
        complete_many(["a", "b"], **options)
    with pytest.warns(BatchInterruptedWarning) as through_accessor:
        pd.DataFrame({"w": ["a", "b"]}).pienteger.complete("{w}", **options)
    assert [w.filename for w in [*direct, *through_accessor]] == [__file__, __file__]


def test_a_batch_run_in_a_cell_records_the_cell_s_number(env_emulator, ip):
    # Worker threads make the calls, but the rows belong to the cell that ran the batch.
    import pienteger_nb

    ip.run_cell("import pienteger_nb", store_history=True)
    result = ip.run_cell("pienteger_nb.complete_many(['a', 'b'], progress=False, max_tokens=2)", store_history=True)
    assert result.success and result.execution_count is not None
    complete_many(["c"], progress=False, max_tokens=2)  # outside any cell: no number
    counts = [None if pd.isna(n) else n for n in pienteger_nb.usage(source="batch")["execution_count"]]
    assert counts == [result.execution_count] * 2 + [None]
