"""The ledger under many processes and threads at once, text SQLite refuses, and a full disk.

Real files in tmp_path, real processes (fork, released together by a barrier), and for the
full disk a real tiny filesystem (tmpfs; skipped where it cannot be mounted). No sqlite3 mocks.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY

from pienteger_nb import Client
from pienteger_nb.errors import BadRequestError
from pienteger_nb.ledger import schema, watch
from pienteger_nb.ledger.default import record_call, usage, usage_summary
from pienteger_nb.ledger.schema import MIGRATIONS, SCHEMA_VERSION
from pienteger_nb.ledger.store import UsageLog, UsageLogError
from pienteger_nb.ledger.unrecorded import unrecorded_calls
from pienteger_nb.types import CallRecord

T0 = dt.datetime(2026, 11, 1, 9, 30, tzinfo=dt.UTC)
FORK = multiprocessing.get_context("fork")
REPLACEMENT = "\ufffd".encode()
# How Python's "surrogatepass" (and CESU-8) would spell U+D800: must never reach the file.
RAW_SURROGATE = "\ud800".encode("utf-8", "surrogatepass")


def call(request_id: str, **fields: Any) -> CallRecord:
    return CallRecord(**{
        "time": T0, "source": "client", "model": "text-davinci-003", "status": "ok", "http_status": 200,
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "latency_s": 0.1,
        "request_id": request_id, **fields,
    })


def _open_record_read(path: str, barrier: Any, results: Any, extra_step: bool) -> None:
    """Child: wait for the others, open the ledger, read it, write one row; report what happened."""
    if extra_step:
        # A step that leaves one row per run in the file: the count proves how many runs there were.
        # It holds the write lock a while, as a step over a large ledger does: the others wait.
        schema.MIGRATIONS = (*schema.MIGRATIONS, (
            "CREATE TABLE IF NOT EXISTS migration_runs (pid INTEGER NOT NULL, work INTEGER NOT NULL)",
            f"""INSERT INTO migration_runs WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
                WHERE i < 1000000) SELECT {os.getpid()}, count(*) FROM n""",
        ))
        schema.SCHEMA_VERSION = len(schema.MIGRATIONS)
    try:
        barrier.wait(timeout=60)
        with UsageLog(path) as log:
            seen = len(log)  # a read (not a frame: 16 pandas imports would dwarf the test)
            log.record(call(f"pid-{os.getpid()}"))
            results.put(("ok", log.schema_version, seen))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test with it
        results.put(("failed", repr(exc), 0))


def open_together(path: Path, processes: int, *, extra_step: bool = False) -> list[tuple[Any, ...]]:
    """Start ``processes`` children that open ``path`` at the same instant; their reports."""
    barrier, results = FORK.Barrier(processes), FORK.Queue()
    children = [
        FORK.Process(target=_open_record_read, args=(str(path), barrier, results, extra_step))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        return [results.get(timeout=120) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()


def ledger_at(path: Path, version: int, rows: int) -> None:
    """A file as a release at schema ``version`` left it, with ``rows`` calls."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for step in MIGRATIONS[:version]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO calls (time_us, source, model, status) VALUES (?, 'client', ?, 'ok')",
        [(i, f"model-{i % 5}") for i in range(rows)],
    )
    conn.execute("COMMIT")
    conn.close()


def file_state(path: Path, query: str) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_16_processes_opening_a_fresh_ledger_at_once_never_fail(tmp_path: Path) -> None:
    for round_ in range(20):
        path = tmp_path / f"round{round_}" / "usage.sqlite"
        reports = open_together(path, 16)
        assert [r for r in reports if r[0] != "ok"] == [], f"round {round_}"
        assert {r[1] for r in reports} == {SCHEMA_VERSION}
        assert file_state(path, "SELECT count(*) FROM calls") == [(16,)]
        assert file_state(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_8_processes_opening_a_ledger_of_the_previous_schema_migrate_it_once(tmp_path: Path) -> None:
    # The real last step, from the previous release's file.
    path = tmp_path / "previous.sqlite"
    ledger_at(path, SCHEMA_VERSION - 1, rows=2000)
    reports = open_together(path, 8)
    assert reports == [("ok", SCHEMA_VERSION, reports[i][2]) for i in range(8)]
    assert all(seen >= 2000 for _, _, seen in reports)  # each read the old rows, then wrote its own
    assert file_state(path, "SELECT count(*) FROM calls") == [(2008,)]
    assert file_state(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]

    # And a step that counts its runs in the file: exactly one of the eight processes ran it.
    counted = tmp_path / "counted.sqlite"
    ledger_at(counted, SCHEMA_VERSION, rows=100)
    reports = open_together(counted, 8, extra_step=True)
    assert [r[:2] for r in reports] == [("ok", SCHEMA_VERSION + 1)] * 8
    assert len(file_state(counted, "SELECT pid FROM migration_runs")) == 1
    assert file_state(counted, "SELECT count(*) FROM calls") == [(108,)]


def test_threads_opening_one_fresh_ledger_at_once_all_open_and_write(tmp_path: Path) -> None:
    path = tmp_path / "threads.sqlite"
    barrier, failures = threading.Barrier(12), []

    def open_and_write(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            with UsageLog(path) as log:
                log.record(call(f"thread-{i}"))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            failures.append(repr(exc))

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert file_state(path, "SELECT count(*) FROM calls") == [(12,)]


def test_lone_surrogates_are_stored_as_replacement_characters_one_row_per_call(tmp_path: Path) -> None:
    path = tmp_path / "surrogates.sqlite"
    with UsageLog(path, store_prompts=True) as log:
        log.record(call("r1", status="error", error="BadRequestError: bad byte \ud800 here", model="m\udfffx"))
        log.record(call("r2", prompt="lone \udc80", text="pair \ud83d\ude00 joined"))
        assert log.record_many([call("r3", model="m\udfffx"), call("r4", source="s\ud801")]) == 2
        log.record(call("r5"))  # and an ordinary row after them
        df = log.frame()
    assert list(df["request_id"]) == ["r1", "r2", "r3", "r4", "r5"]
    assert df["error"][0] == "BadRequestError: bad byte \ufffd here"
    assert list(df["model"][:3]) == ["m\ufffdx", "text-davinci-003", "m\ufffdx"]
    assert df["prompt"][1] == "lone \ufffd" and df["text"][1] == "pair \U0001f600 joined"
    assert ("model", "m\ufffdx") in file_state(path, "SELECT name, value FROM labels")
    data = path.read_bytes()  # closed: the WAL is checkpointed into the file
    assert data.count(REPLACEMENT) >= 5 and RAW_SURROGATE not in data
    assert "\U0001f600".encode() in data


def test_a_service_error_with_a_lone_surrogate_is_still_a_row(raw_server: Callable[..., str]) -> None:
    body = b'{"error": {"message": "bad input \\ud800 here", "type": "invalid_request_error"}}'
    url = raw_server(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recording must not even warn
        with pytest.raises(BadRequestError):
            Client(api_key=TEST_KEY, base_url=url, max_retries=0).complete("hi", model="text-ada-001")
    df = usage()
    assert len(df) == 1 and df["status"][0] == "error"
    assert "bad input \ufffd here" in df["error"][0]
    assert df.attrs["unrecorded_calls"] == 0


def test_a_deleted_ledger_is_started_again_and_unwritable_ones_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ip: Any
) -> None:
    folder = tmp_path / "ledger"
    monkeypatch.setenv("PIENTEGER_USAGE_DB", str(folder / "usage.sqlite"))
    record_call(call("first"))
    shutil.rmtree(folder)  # the open connection writes on into the deleted file
    record_call(call("after-delete-1"))
    record_call(call("after-delete-2"))
    # Every row written since the file was last seen in place is written again into a new one.
    assert list(usage()["request_id"]) == ["first", "after-delete-1", "after-delete-2"]
    record_call(call("after-delete-3"))
    monkeypatch.setattr(watch, "FILE_CHECK_INTERVAL_S", 0.0)  # from the next look on: at every row
    assert list(usage()["request_id"])[-2:] == ["after-delete-2", "after-delete-3"]  # a read looks

    shutil.rmtree(folder)
    folder.write_text("a file where the ledger's folder should be")  # the ledger cannot be made
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(4):
            record_call(call(f"lost-{i}"))
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    missing = unrecorded_calls()
    assert missing.count == 4 and "cannot open the usage ledger" in missing.reason
    shown = _usage_magic_output(ip)
    assert "4 calls since" in shown and "could not be recorded" in shown
    assert "Traceback" not in shown

    folder.unlink()
    record_call(call("back"))
    assert unrecorded_calls().count == 0
    df = usage()
    assert list(df["request_id"]) == ["back"] and df.attrs["unrecorded_calls"] == 0
    assert "could not be recorded" not in _usage_magic_output(ip)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB filesystem (tmpfs) at tmp_path / "disk"; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=False, capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here (needs root): " + mounted.stderr.decode().strip())
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem at ``disk``, then free ``leave_bytes``; returns the filler to delete."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
        try:  # the last few pages, smaller than a chunk
            while True:
                out.write(b"\0" * 1024)
        except OSError:
            pass
    if leave_bytes:
        os.truncate(filler, max(0, filler.stat().st_size - leave_bytes))
    return filler


def test_failures_to_record_are_counted_and_shown_until_recording_works(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch, ip: Any
) -> None:
    monkeypatch.setenv("PIENTEGER_USAGE_DB", str(tiny_disk / "usage.sqlite"))
    record_call(call("before"))
    assert unrecorded_calls().count == 0
    filler = fill(tiny_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            record_call(call(f"lost-{i}"))
    ledger_warnings = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(ledger_warnings) == 1  # one warning; the later failures are counted, not repeated
    assert "database or disk is full" in ledger_warnings[0]
    missing = unrecorded_calls()
    assert missing.count == 3 and "database or disk is full" in missing.reason

    df = usage()
    assert df.attrs["unrecorded_calls"] == 3 and "disk is full" in df.attrs["unrecorded_reason"]
    assert usage_summary().attrs["unrecorded_calls"] == 3
    assert list(df["request_id"]) == ["before"]
    shown = _usage_magic_output(ip)
    assert "3 calls since" in shown and "could not be recorded" in shown and "disk is full" in shown

    filler.unlink()  # space again: the next call is recorded and the count clears
    record_call(call("after"))
    assert unrecorded_calls().count == 0
    df = usage()
    assert df.attrs["unrecorded_calls"] == 0 and list(df["request_id"]) == ["before", "after"]
    assert "could not be recorded" not in _usage_magic_output(ip)


def _usage_magic_output(ip: Any) -> str:
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        ip.run_cell("%pienteger usage", silent=True)
    return cap.stdout + cap.stderr


def test_a_full_disk_during_migration_names_the_real_cause(tiny_disk: Path) -> None:
    path = tiny_disk / "old.sqlite"
    ledger_at(path, 1, rows=8000)  # the v2 index and the v4 labels need pages the disk lacks
    filler = fill(tiny_disk, leave_bytes=64 * 1024)
    with pytest.raises(UsageLogError) as caught:
        UsageLog(path)
    message = str(caught.value)
    assert "database or disk is full" in message and "free some space" in message
    assert "cannot rollback" not in message and "\n" not in message
    assert f"from version 1 to {SCHEMA_VERSION}" in message
    filler.unlink()
    assert file_state(path, "PRAGMA user_version") == [(1,)]  # rolled back whole
    with UsageLog(path) as log:
        assert log.schema_version == SCHEMA_VERSION and len(log) == 8000


FILE_SIZE_LIMITED_OPEN = """
import resource, signal, sys
from pienteger_nb.ledger.store import UsageLog, UsageLogError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    UsageLog(sys.argv[1])
except UsageLogError as exc:
    print(exc)
"""


@pytest.mark.skipif(os.name != "posix", reason="needs RLIMIT_FSIZE")
def test_a_write_error_during_migration_names_the_real_cause_without_root(tmp_path: Path) -> None:
    # The same as a full disk for a process that may not mount one: its files may not grow.
    path = tmp_path / "old.sqlite"
    ledger_at(path, 1, rows=8000)
    file_state(path, "PRAGMA wal_checkpoint(TRUNCATE)")  # the rows in the file, the WAL empty
    child = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED_OPEN, str(path)], check=False, capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stderr == ""
    message = child.stdout.strip()
    assert message.startswith(f"cannot open the usage ledger at {path}: upgrading its schema from version 1")
    assert "disk I/O error" in message and "free space" in message and "cannot rollback" not in message
    assert file_state(path, "PRAGMA user_version") == [(1,)]
    assert file_state(path, "SELECT count(*) FROM calls") == [(8000,)]
