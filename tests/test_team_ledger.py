"""The team ledger on a real PostgreSQL server (a throwaway cluster per session, tests/pg.py)."""

from __future__ import annotations

import datetime as _dt
import warnings

import pandas as pd
import pytest
from pg import Cluster

from pienteger_nb.ledger import UsageLog
from pienteger_nb.types import CallRecord

psycopg = pytest.importorskip("psycopg")

T0 = _dt.datetime(2026, 11, 2, 9, 30, tzinfo=_dt.UTC)


def _records() -> list[CallRecord]:
    """Calls of every shape: ok, error, cancelled, streamed, missing counts, odd models, prompts."""
    return [
        CallRecord(time=T0, source="magic", model="text-davinci-003", status="ok", http_status=200, stream=True,
                   prompt_tokens=5, completion_tokens=7, total_tokens=12, usage_source="reported",
                   latency_s=0.1234567, ttft_s=0.0123456, finish_reason="stop", attempts=1, request_id="req-1",
                   prompt="Say hi", text="hi", execution_count=3),
        CallRecord(time=T0 + _dt.timedelta(seconds=5), source="batch", model="my-model", status="error",
                   error="RateLimitError: slow down", http_status=429, attempts=3),
        CallRecord(time=T0 - _dt.timedelta(days=1), source="form", model="text-davinci-003", status="cancelled",
                   stream=True, prompt_tokens=2, completion_tokens=1, total_tokens=3, usage_source="estimated",
                   latency_s=2.5, finish_reason=None, request_id=None),
        CallRecord(time=T0 + _dt.timedelta(minutes=1), source="client", model="zeta", status="ok",
                   http_status=200, prompt_tokens=1, completion_tokens=2, total_tokens=3,
                   usage_source="reported", latency_s=0.5, finish_reason="length", request_id="req-4",
                   prompt=["a", "b"], text=["x", "y"]),
    ]


def _team(url: str, tmp_path, **options):
    from pienteger_nb.ledger.postgres import PostgresLog

    return PostgresLog(url, spool=tmp_path / "spool.sqlite", **options)


@pytest.mark.parametrize("store_prompts", [False, True])
def test_usage_frame_is_the_sqlite_frame(pg_url, tmp_path, store_prompts):
    with UsageLog(tmp_path / "a.sqlite", store_prompts=store_prompts) as lite, \
            _team(pg_url, tmp_path, store_prompts=store_prompts) as team:
        for rec in _records():
            lite.record(rec)
            team.record(rec)
        assert len(team) == 4
        pd.testing.assert_frame_equal(team.frame(), lite.frame())
        assert ("prompt" in team.frame().columns) is store_prompts
        pd.testing.assert_frame_equal(team.frame(since="2026-11-02"), lite.frame(since="2026-11-02"))
        pd.testing.assert_frame_equal(team.frame(model="zeta", source=["client"]), lite.frame(model="zeta", source=["client"]))
        for by in ("model", "day", "source"):
            pd.testing.assert_frame_equal(team.summary(by), lite.summary(by))
        prices = {"text-davinci-003": 0.02}
        pd.testing.assert_frame_equal(team.summary(prices=prices), lite.summary(prices=prices))


def test_empty_ledger_frame_matches(pg_url, tmp_path):
    with UsageLog(tmp_path / "a.sqlite") as lite, _team(pg_url, tmp_path) as team:
        pd.testing.assert_frame_equal(team.frame(), lite.frame())
        assert "No calls recorded" in team.summary_text()


def test_migration_makes_the_sqlite_columns_and_a_schema_version(pg_url, tmp_path):
    from pienteger_nb.ledger.schema import INSERT_COLUMNS, SCHEMA_VERSION

    with _team(pg_url, tmp_path) as team:
        assert team.open() == SCHEMA_VERSION
        assert team.open() == SCHEMA_VERSION  # a second run finds the work done
    with psycopg.connect(pg_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
        columns = {n for (n,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls'")}
    assert versions == [SCHEMA_VERSION]
    assert set(INSERT_COLUMNS) <= columns and {"id", "row_uid"} <= columns


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _calls(n: int, start: int = 0) -> list[CallRecord]:
    return [
        CallRecord(time=T0 + _dt.timedelta(seconds=start + i), source="client", model="m", status="ok",
                   total_tokens=start + i, request_id=f"req-{start + i}")
        for i in range(n)
    ]


def test_server_down_spools_and_the_next_call_sends_each_row_once(pg_cluster: Cluster, pg_url, tmp_path):
    clock = _Clock()
    team = _team(pg_url, tmp_path, clock=clock)
    try:
        for rec in _calls(2):
            team.record(rec)
        pg_cluster.stop()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for rec in _calls(3, start=2):
                    team.record(rec)  # never raises: the call itself has succeeded
            assert team.waiting == 3
            assert len(caught) == 1  # one warning per outage, not one per row
            message = str(caught[0].message)
            assert "unreachable" in message and pg_cluster.password not in message
            assert "3 rows wait" in team.waiting_note()
            with pytest.raises(Exception) as info:
                team.frame()
            from pienteger_nb.errors import PientegerError

            assert isinstance(info.value, PientegerError)
            assert "unreachable" in str(info.value) and pg_cluster.password not in str(info.value)
            assert "****" in str(info.value)
        finally:
            pg_cluster.start()
        assert len(team.frame()) == 2  # reading after the restart needs no second try by the user
        clock.now += 60  # past the pause between reconnect tries
        team.record(_calls(1, start=5)[0])
        assert team.waiting == 0
        frame = team.frame()
        assert frame["request_id"].tolist() == [f"req-{i}" for i in range(6)]
        # A row sent again (its answer lost on the way back) is not stored twice.
        team._spool.add([("already-sent", _row(team, 99))])
        team._spool.add([("already-sent", _row(team, 99))])
        team.record(_calls(1, start=6)[0])
        team._spool.add([("already-sent", _row(team, 99))])
        team.record(_calls(1, start=7)[0])
        assert team.frame()["total_tokens"].tolist().count(99) == 1
        assert len(team) == 9
    finally:
        team.close()


def _row(team, tokens: int):
    from pienteger_nb.ledger.schema import row_values

    return row_values(_calls(1, start=tokens)[0], store_prompts=False)


def test_login_refused_says_so_with_the_password_masked(pg_cluster: Cluster, tmp_path):
    wrong = "not-the-Password-123"
    team = _team(pg_cluster.url(password=wrong), tmp_path)
    try:
        with pytest.raises(Exception) as info:
            team.frame()
        text = f"{info.value!s} {info.value!r} {team!r} {team.path}"
        assert "login refused" in str(info.value)
        assert wrong not in text and pg_cluster.password not in text
        assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        team.close()


@pytest.fixture
def team_env(pg_url, monkeypatch):
    """PIENTEGER_USAGE_DB names the test's database; the process's team ledgers closed after."""
    from pienteger_nb.ledger.backend import close_team_logs

    monkeypatch.setenv("PIENTEGER_USAGE_DB", pg_url)
    yield pg_url
    close_team_logs()


def test_default_ledger_on_postgres_from_a_real_client(team_env, pg_cluster, emulator):
    from conftest import TEST_KEY

    import pienteger_nb

    with pienteger_nb.Client(api_key=TEST_KEY, base_url=emulator.url, timeout=10) as client:
        c = client.complete("Say this is a test", model="text-curie-001", max_tokens=7, temperature=0)
    frame = pienteger_nb.usage()
    assert frame["request_id"].tolist() == [c.request_id]
    assert frame["total_tokens"].tolist() == [c.usage.total_tokens]
    summary = pienteger_nb.usage_summary(by="source")
    assert summary.loc["client", "calls"] == 1
    from pienteger_nb.ledger import default_log

    assert pg_cluster.password not in repr(default_log()) and "****" in default_log().path


def test_usage_magic_says_how_many_rows_wait(team_env, pg_cluster, ip, capsys):
    from IPython.utils.capture import capture_output

    from pienteger_nb.ledger import record_call

    pg_cluster.stop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for rec in _calls(2):
                record_call(rec)
        with capture_output() as cap:
            result = ip.run_cell("%pienteger usage", silent=True)
        shown = cap.stdout + cap.stderr
        assert "2 rows wait" in shown
        assert "unreachable" in shown and not result.success
        assert pg_cluster.password not in shown
    finally:
        pg_cluster.start()


def test_config_shows_the_database_url_masked(team_env, pg_cluster, ip):
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        ip.run_cell("%pienteger config", silent=True)
    blob = cap.stdout + "".join(str(o.data) for o in cap.outputs)
    assert pg_cluster.password not in blob
    assert f"postgres:****@127.0.0.1:{pg_cluster.port}" in blob


def test_ledger_copy_sqlite_to_postgres_and_back_twice_adds_nothing(pg_cluster, pg_url, tmp_path, capsys):
    from pienteger_nb.cli import main

    source = tmp_path / "mine.sqlite"
    with UsageLog(source) as lite:
        lite.record_many(_records())
        lite.record(_records()[1])  # two equal rows stay two
    assert main(["ledger", "copy", str(source), pg_url]) == 0
    first = capsys.readouterr().out
    assert "Copied 5 row(s)" in first and pg_cluster.password not in first and "****" in first
    assert main(["ledger", "copy", str(source), pg_url]) == 0
    assert "Copied 0 row(s)" in capsys.readouterr().out
    back = tmp_path / "back.sqlite"
    for _ in range(2):
        assert main(["ledger", "copy", pg_url, str(back)]) == 0
    assert "Copied 0 row(s)" in capsys.readouterr().out
    with UsageLog(source) as a, UsageLog(back) as b, _team(pg_url, tmp_path) as team:
        pd.testing.assert_frame_equal(team.frame(), a.frame())
        pd.testing.assert_frame_equal(b.frame(), a.frame())


def test_ledger_migrate_and_a_refused_login_on_the_command_line(pg_cluster, pg_url, capsys):
    from pienteger_nb.cli import main
    from pienteger_nb.ledger.schema import SCHEMA_VERSION

    assert main(["ledger", "migrate", pg_url]) == 0
    out = capsys.readouterr().out
    assert f"version {SCHEMA_VERSION}" in out and pg_cluster.password not in out
    wrong = pg_url.replace(pg_cluster.password, "Wr0ng-Secret-Value")
    assert main(["ledger", "migrate", wrong]) == 2
    captured = capsys.readouterr()
    assert "login refused" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Wr0ng-Secret-Value" not in captured.out + captured.err


def test_threads_and_kernels_starting_together_migrate_once_and_lose_no_row(pg_url, tmp_path):
    import threading

    from pienteger_nb.ledger.postgres import PostgresLog

    logs = [PostgresLog(pg_url, spool=tmp_path / f"s{i}.sqlite") for i in range(4)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for rec in _calls(25, start=100 * i):
                logs[i % 4].record(rec)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    frame = logs[0].frame()
    assert len(frame) == 200 and frame["request_id"].is_unique
    assert sum(log.waiting for log in logs) == 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    for log in logs:
        log.close()


def test_the_spool_is_bounded_and_says_so(tmp_path):
    from pienteger_nb.ledger.schema import row_values
    from pienteger_nb.ledger.spool import Spool

    spool = Spool(tmp_path / "spool.sqlite", max_rows=3)
    rows = [(f"u{i}", row_values(rec, store_prompts=False)) for i, rec in enumerate(_calls(5))]
    with pytest.warns(RuntimeWarning, match="full"):
        assert spool.add(rows) == 3
    assert spool.count() == 3
    assert [uid for uid, _ in spool.peek()] == ["u0", "u1", "u2"]
    assert spool.peek()[0][1] == rows[0][1]
    spool.remove(["u0"])
    assert spool.count() == 2
    spool.close()


def test_usage_command_reads_the_team_ledger(pg_cluster, pg_url, tmp_path, capsys):
    from pienteger_nb.cli import main

    with _team(pg_url, tmp_path) as team:
        team.record_many(_records())
    assert main(["usage", "--db", pg_url, "--by", "source"]) == 0
    out = capsys.readouterr().out
    assert "4 calls" in out and "****" in out and pg_cluster.password not in out
    assert main(["usage", "--db", pg_url.replace(pg_cluster.password, "nope-nope-nope")]) == 2
    err = capsys.readouterr().err
    assert "login refused" in err and "nope-nope-nope" not in err


def test_without_psycopg_calls_still_succeed_and_usage_says_how_to_install(monkeypatch):
    import sys

    from pienteger_nb import usage
    from pienteger_nb.errors import PientegerError
    from pienteger_nb.ledger import record_call

    monkeypatch.setenv("PIENTEGER_USAGE_DB", "postgresql://bob:Hidden-Pass-1@127.0.0.1:1/team")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an install without the team extra sees
    with pytest.warns(RuntimeWarning, match=r"pienteger_nb\[team\]"):
        record_call(_calls(1)[0])
    with pytest.raises(PientegerError, match=r"pienteger_nb\[team\]") as info:
        usage()
    assert "Hidden-Pass-1" not in str(info.value)


def test_many_models_too_many_to_pack_read_the_same(pg_url, tmp_path):
    records = [
        CallRecord(time=T0 + _dt.timedelta(seconds=i), source="client", model=f"model-{i % 70:02d}", status="ok",
                   finish_reason=f"reason-{i % 65}", total_tokens=i)
        for i in range(140)
    ]
    with UsageLog(tmp_path / "a.sqlite") as lite, _team(pg_url, tmp_path) as team:
        lite.record_many(records)
        team.record_many(records)
        pd.testing.assert_frame_equal(team.frame(), lite.frame())


def test_a_restart_between_calls_is_invisible(pg_cluster: Cluster, pg_url, tmp_path):
    with _team(pg_url, tmp_path) as team:
        team.record(_calls(1)[0])  # leaves an idle pooled connection, which the restart breaks
        pg_cluster.stop()
        pg_cluster.start()
        assert len(team.frame()) == 1
        team.record(_calls(1, start=1)[0])
        pg_cluster.stop()
        pg_cluster.start()
        team.record(_calls(1, start=2)[0])
        assert team.waiting == 0 and len(team) == 3


def test_sixteen_sessions_migrating_a_new_database_at_once_all_succeed(pg_url):
    import threading

    from pienteger_nb.ledger.pgschema import migrate_postgres
    from pienteger_nb.ledger.schema import SCHEMA_VERSION

    start = threading.Barrier(16, timeout=60)
    versions: list[int] = []
    errors: list[Exception] = []

    def migrate_one() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            start.wait()
            try:
                versions.append(migrate_postgres(conn))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=migrate_one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and versions == [SCHEMA_VERSION] * 16
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
