"""The usage ledger on real SQLite files: rows, dtypes, crashes, threads, processes, old schemas."""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest
from pg import BACKENDS, open_ledger

from pienteger_nb import config
from pienteger_nb.ledger import frame as ledger_frame
from pienteger_nb.ledger.default import default_log, record_call, usage
from pienteger_nb.ledger.schema import SCHEMA_VERSION
from pienteger_nb.ledger.store import UsageLog, UsageLogError
from pienteger_nb.types import CallRecord

T0 = dt.datetime(2026, 11, 1, 9, 30, 0, 123456, tzinfo=dt.UTC)
CONTRACT_DTYPES = {
    "time": "datetime64[ns, UTC]",
    "source": "category",
    "model": "category",
    "status": "category",
    "error": "string",
    "http_status": "Int64",
    "stream": "bool",
    "prompt_tokens": "Int64",
    "completion_tokens": "Int64",
    "total_tokens": "Int64",
    "usage_source": "category",
    "latency_s": "float64",
    "ttft_s": "float64",
    "finish_reason": "string",
    "attempts": "Int64",
    "request_id": "string",
    "endpoint": "category",
    "execution_count": "Int64",
    "cost": "Float64",
    "cached": "bool",
    "notebook": "string",
    "user": "string",
}


def ok(**fields) -> CallRecord:
    return CallRecord(**{
        "time": T0, "source": "client", "model": "text-davinci-003", "status": "ok", "http_status": 200,
        "prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12, "usage_source": "reported",
        "latency_s": 0.25, "finish_reason": "length", "request_id": "req-ok", "prompt": "Say this is a test",
        "text": "This is a test", **fields,
    })


def error(**fields) -> CallRecord:
    return CallRecord(**{
        "time": T0 + dt.timedelta(seconds=1), "source": "magic", "model": "text-curie-001", "status": "error",
        "error": "BadRequestError: max_tokens is too large", "http_status": 400, "latency_s": 0.01,
        "request_id": "req-err", "execution_count": 7, **fields,
    })


@pytest.fixture(params=BACKENDS)
def log(request, tmp_path):
    with open_ledger(request, tmp_path / "ledger" / "usage.sqlite", store_prompts=False) as opened:
        yield opened


def test_an_ok_call_is_one_row_with_every_field(log):
    log.record(ok(stream=True, ttft_s=0.05, attempts=2, execution_count=3))
    df = log.frame()
    assert len(df) == 1
    row = df.iloc[0]
    assert row["time"] == pd.Timestamp(T0)  # to the microsecond
    assert (row["source"], row["model"], row["status"], row["error"]) == ("client", "text-davinci-003", "ok", "")
    assert (row["http_status"], row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (200, 5, 7, 12)
    assert row["stream"] is True or row["stream"] == True
    assert row["usage_source"] == "reported" and row["finish_reason"] == "length" and row["request_id"] == "req-ok"
    assert row["latency_s"] == pytest.approx(0.25, abs=1e-6) and row["ttft_s"] == pytest.approx(0.05, abs=1e-6)
    assert row["attempts"] == 2 and row["execution_count"] == 3 and row["endpoint"] == "completions"
    assert "prompt" not in df and "text" not in df  # not stored unless asked


def test_error_streamed_estimated_and_cancelled_rows(log):
    log.record(ok())
    log.record(error())
    log.record(ok(time=T0 + dt.timedelta(seconds=2), stream=True, ttft_s=0.02, request_id="req-stream"))
    log.record(CallRecord(
        time=T0 + dt.timedelta(seconds=3), source="client", model="text-davinci-003", status="error",
        error="StreamError: the stream broke mid-event", http_status=200, stream=True, prompt_tokens=4,
        completion_tokens=3, total_tokens=7, usage_source="estimated", latency_s=0.3, ttft_s=0.1,
        request_id="req-cut",
    ))
    log.record(CallRecord(
        time=T0 + dt.timedelta(seconds=4), source="form", model="text-ada-001", status="cancelled",
        http_status=200, stream=True, prompt_tokens=2, completion_tokens=9, total_tokens=11,
        usage_source="estimated", latency_s=1.5, ttft_s=0.2, request_id="req-stop",
    ))
    df = log.frame()
    assert list(df["request_id"]) == ["req-ok", "req-err", "req-stream", "req-cut", "req-stop"]
    assert list(df["status"]) == ["ok", "error", "ok", "error", "cancelled"]
    assert list(df["stream"]) == [False, False, True, True, True]
    err = df.iloc[1]
    assert err["error"] == "BadRequestError: max_tokens is too large" and err["http_status"] == 400
    assert pd.isna(err["prompt_tokens"]) and pd.isna(err["usage_source"]) and pd.isna(err["finish_reason"])
    assert math.isnan(err["ttft_s"]) and err["execution_count"] == 7 and err["source"] == "magic"
    assert list(df["usage_source"].astype(object).fillna("-")) == ["reported", "-", "reported", "estimated", "estimated"]
    assert df.iloc[3]["error"].startswith("StreamError") and df.iloc[3]["total_tokens"] == 7
    assert df.iloc[4]["source"] == "form" and df.iloc[4]["completion_tokens"] == 9
    assert list(df["error"] == "") == [True, False, True, False, True]


def test_dtypes_are_the_contract_s_also_when_empty(log):
    empty = log.frame()
    assert len(empty) == 0 and {c: str(t) for c, t in empty.dtypes.items()} == CONTRACT_DTYPES
    log.record(ok())
    log.record(error())
    df = log.frame()
    assert {c: str(t) for c, t in df.dtypes.items()} == CONTRACT_DTYPES
    assert list(df.columns) == list(CONTRACT_DTYPES)
    assert set(df["status"].cat.categories) >= {"ok", "error", "cancelled"}
    assert set(df["usage_source"].cat.categories) == {"reported", "estimated"}


def test_prompts_are_stored_only_when_asked(tmp_path):
    with UsageLog(tmp_path / "a.sqlite") as log:  # store_prompts=None: the setting, read per record
        log.record(ok(request_id="off"))
        config.set_kernel("store_prompts", "true")
        log.record(ok(request_id="on", time=T0 + dt.timedelta(seconds=1), prompt=["one", "two"]))
        df = log.frame()
    assert list(df["request_id"]) == ["off", "on"]
    assert pd.isna(df["prompt"].iloc[0]) and pd.isna(df["text"].iloc[0])
    assert df["prompt"].iloc[1] == '["one", "two"]' and df["text"].iloc[1] == "This is a test"
    assert str(df["prompt"].dtype) == "string"
    with UsageLog(tmp_path / "b.sqlite", store_prompts=False) as log:  # an explicit False wins
        log.record(ok())
        assert "prompt" not in log.frame()
    assert b"Say this is a test" not in (tmp_path / "b.sqlite").read_bytes()


def test_a_long_error_is_kept_short(log):
    log.record(error(error="InternalServerError: " + "<html>" * 2000))
    stored = log.frame()["error"].iloc[0]
    assert len(stored) == 2000 and stored.endswith("…")


def test_file_is_wal_with_a_versioned_schema_and_folders_created(tmp_path):
    path = tmp_path / "deep" / "er" / "usage.sqlite"
    UsageLog(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_memory_ledger_keeps_rows_for_its_lifetime():
    log = UsageLog(":memory:")
    log.record(ok())
    log.record(error())
    assert len(log) == 2 and list(log.frame()["status"]) == ["ok", "error"]
    log.close()
    with pytest.raises(UsageLogError, match="closed"):
        log.record(ok())


def test_rows_come_back_in_time_order(log):
    later, earlier = ok(request_id="later", time=T0 + dt.timedelta(seconds=5)), ok(request_id="earlier")
    log.record(later)  # a long call that started first is recorded last
    log.record(earlier)
    assert list(log.frame()["request_id"]) == ["earlier", "later"]


def test_filters_since_until_model_source(log):
    for i in range(6):
        log.record(ok(time=T0 + dt.timedelta(days=i), model=["a", "b"][i % 2], source=["magic", "batch", "form"][i % 3],
                      request_id=f"r{i}"))
    ids = lambda df: list(df["request_id"])
    assert ids(log.frame("2026-11-03")) == ["r2", "r3", "r4", "r5"]
    assert ids(log.frame(dt.date(2026, 11, 2), "2026-11-04")) == ["r1", "r2"]  # until is exclusive
    assert ids(log.frame(until=pd.Timestamp("2026-11-02T09:30:00.123456", tz="UTC"))) == ["r0"]
    assert ids(log.frame(model="a")) == ["r0", "r2", "r4"]
    assert ids(log.frame(model=["a", "b"], source=["form"])) == ["r2", "r5"]
    assert list(log.frame(model="a")["model"].cat.categories) == ["a"]
    now = dt.datetime.now(dt.UTC)
    log.record(ok(time=now - dt.timedelta(minutes=30), request_id="recent"))
    assert ids(log.frame("1h")) == ["recent"] and ids(log.frame(dt.timedelta(hours=2))) == ["recent"]
    assert len(log.frame("90d")) == 7
    with pytest.raises(ValueError, match="since='last tuesday' is not a time.*1h, 7d"):
        log.frame("last tuesday")
    with pytest.raises(ValueError, match="until=NaT is not a time"):
        log.frame(until=pd.NaT)
    with pytest.raises(TypeError, match="model= takes a name or a list of names, got 5"):
        log.frame(model=5)


def test_a_writer_that_skips_the_labels_table_is_still_read_right(log):
    if not isinstance(log, UsageLog):
        pytest.skip("the labels table is the SQLite reader's")
    log.record(ok())
    conn = sqlite3.connect(log.path)
    conn.execute(
        "INSERT INTO calls (time_us, source, model, status, finish_reason) VALUES (?, 'script', 'new-model', 'ok', 'odd')",
        (int(T0.timestamp() * 1e6) + 1,),
    )
    conn.commit()
    conn.close()
    df = log.frame()
    assert list(df["model"]) == ["text-davinci-003", "new-model"] and list(df["source"]) == ["client", "script"]
    assert list(df["finish_reason"]) == ["length", "odd"]
    assert len(log.frame()) == 2  # and again, now that the read noted the new labels


def test_many_chunks_read_on_several_connections_line_up(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_frame, "_CHUNK", 7)  # 100 rows: 15 windows, read by several threads
    with UsageLog(tmp_path / "c.sqlite", store_prompts=True) as log:
        log.record_many(
            ok(time=T0 + dt.timedelta(seconds=i), request_id=f"r{i}", prompt=f"p{i}", text=f"t{i}",
               model=f"m{i % 70}", total_tokens=i)
            for i in range(100)
        )
        df = log.frame()
        odd = log.frame(model=[f"m{i}" for i in range(1, 70, 2)])
    assert list(df["request_id"]) == [f"r{i}" for i in range(100)]
    assert list(df["prompt"]) == [f"p{i}" for i in range(100)] and list(df["text"]) == [f"t{i}" for i in range(100)]
    assert list(df["model"]) == [f"m{i % 70}" for i in range(100)]  # 70 models: decoded from text, not codes
    assert list(df["total_tokens"]) == list(range(100))
    assert list(odd["request_id"]) == [f"r{i}" for i in range(100) if i % 70 % 2]


def test_eight_threads_writing_500_rows_each_all_4000_are_there(log):
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(500):
                log.record(ok(request_id=f"t{n}-{i}", time=T0 + dt.timedelta(milliseconds=i)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and not errors
    df = log.frame()
    assert len(df) == 4000 and df["request_id"].nunique() == 4000


WRITER = textwrap.dedent("""
    import datetime as dt, sys
    from pienteger_nb.types import CallRecord
    from pienteger_nb.ledger.store import UsageLog
    log = UsageLog(sys.argv[1], store_prompts=False)
    i = 0
    while True:
        log.record(CallRecord(time=dt.datetime.now(dt.timezone.utc), source="batch", model="text-ada-001",
                              status="ok", total_tokens=i, request_id=f"{sys.argv[2]}-{i}"))
        print(i, flush=True)  # after the commit: this row is on disk
        i += 1
        if len(sys.argv) > 3 and i == int(sys.argv[3]):
            break
""")


READER = (
    "import sys; from pienteger_nb.ledger.store import UsageLog; "
    "df = UsageLog(sys.argv[1]).frame(); print(len(df), df['total_tokens'].is_monotonic_increasing)"
)


def test_rows_written_before_a_sigkill_are_all_there(tmp_path):
    path = tmp_path / "killed.sqlite"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "k"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        confirmed = [int(child.stdout.readline()) for _ in range(200)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert confirmed == list(range(200))
    reader = subprocess.run(
        [sys.executable, "-c", READER, str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    count, ordered = reader.stdout.split()
    assert int(count) >= 200 and ordered == "True"  # every confirmed row, no half row


def test_two_processes_write_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    UsageLog(path).close()
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "child", "300"], stdout=subprocess.DEVNULL)
    with UsageLog(path) as log:
        for i in range(300):
            log.record(ok(request_id=f"parent-{i}"))
        assert child.wait(timeout=60) == 0
        df = log.frame()
    assert len(df) == 600 and df["request_id"].str.startswith("child").sum() == 300


def test_an_old_v1_file_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL,
            status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', http_status INTEGER,
            stream INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER, completion_tokens INTEGER,
            total_tokens INTEGER, usage_source TEXT, latency_s REAL NOT NULL DEFAULT 0, ttft_s REAL,
            finish_reason TEXT, attempts INTEGER NOT NULL DEFAULT 1, request_id TEXT);
        INSERT INTO calls (time_us, source, model, status, http_status, total_tokens, usage_source, latency_s, request_id)
            VALUES (1793525400000000, 'magic', 'text-davinci-002', 'ok', 200, 30, 'reported', 0.5, 'old-1');
        PRAGMA user_version = 1;
    """)
    conn.close()
    with UsageLog(path) as log:
        assert log.schema_version == SCHEMA_VERSION
        log.record(ok(request_id="new-1", time=dt.datetime(2026, 11, 2, tzinfo=dt.UTC), execution_count=4))
        df = log.frame()
    assert list(df["request_id"]) == ["old-1", "new-1"]
    assert df["time"].iloc[0] == pd.Timestamp("2026-11-01T09:30:00", tz="UTC")
    assert list(df["model"]) == ["text-davinci-002", "text-davinci-003"] and df["total_tokens"].iloc[0] == 30
    assert df["endpoint"].iloc[0] == "completions" and pd.isna(df["execution_count"].iloc[0])
    assert df["execution_count"].iloc[1] == 4
    assert {c: str(t) for c, t in df.dtypes.items()} == CONTRACT_DTYPES
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_file_from_a_newer_version_still_opens(tmp_path):
    path = tmp_path / "future.sqlite"
    UsageLog(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE calls ADD COLUMN something_new TEXT")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with UsageLog(path) as log:
        log.record(ok())
        assert len(log.frame()) == 1 and log.schema_version == SCHEMA_VERSION + 5


def test_an_unusable_path_says_what_to_do(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(UsageLogError, match="cannot open the usage ledger at .*taken.*PIENTEGER_USAGE_DB"):
        UsageLog(tmp_path / "taken")


def test_default_log_follows_the_setting_and_record_call_writes_there(tmp_path, monkeypatch):
    first = default_log()
    assert first.path == str(tmp_path / "usage.sqlite") and default_log() is first
    record_call(ok())
    monkeypatch.setenv("PIENTEGER_USAGE_DB", str(tmp_path / "other.sqlite"))
    second = default_log()
    assert second is not first and second.path == str(tmp_path / "other.sqlite") and first.closed
    record_call(error())
    assert list(usage()["status"]) == ["error"]
    assert len(UsageLog(tmp_path / "usage.sqlite")) == 1


def test_record_call_warns_instead_of_raising_when_the_ledger_is_unusable(tmp_path, monkeypatch):
    (tmp_path / "dir.sqlite").mkdir()
    monkeypatch.setenv("PIENTEGER_USAGE_DB", str(tmp_path / "dir.sqlite"))
    with pytest.warns(RuntimeWarning, match="cannot open the usage ledger"):
        record_call(ok())


def test_importing_the_ledger_does_not_import_pandas():
    code = "import sys, pienteger_nb.ledger.store, pienteger_nb.ledger.frame, pienteger_nb.ledger.views; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_public_functions_reach_the_default_ledger(tmp_path):
    import pienteger_nb

    record_call(ok())
    assert len(pienteger_nb.usage()) == 1
    assert pienteger_nb.usage_summary().loc["text-davinci-003", "calls"] == 1
    assert Path(default_log().path) == tmp_path / "usage.sqlite"
    assert os.path.exists(tmp_path / "usage.sqlite")


def test_pienteger_nb_usage_stays_a_function_whatever_is_imported_first():
    # The ledger module is not called `usage`, so importing it (the default recorder does at
    # the first call) never shadows the public usage() function, in either order.
    code = (
        "import pienteger_nb\n"
        "u = pienteger_nb.usage\n"
        "from pienteger_nb.ledger.default import record_call\n"
        "from pienteger_nb import ledger\n"
        "from pienteger_nb.ledger import usage\n"
        "assert callable(ledger.usage_summary) and usage is u is ledger.usage\n"
        "print(len(pienteger_nb.usage()), len(usage(model='x')), len(pienteger_nb.usage_summary()))\n"
    )
    env = {**os.environ, "PIENTEGER_USAGE_DB": ":memory:"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0", "0"]
