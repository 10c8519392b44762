"""Budgets by scope and the replay cache on the team ledger (a real throwaway PostgreSQL server).

The scope and expiry tests run on both ledgers (``BACKENDS``); the processes, the cache and
the summaries by user against the real server.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path

import pytest
from conftest import TEST_KEY
from pg import BACKENDS, open_ledger
from together import run_together

import pienteger_nb
from pienteger_nb import BudgetExceededError, Client, set_prices
from pienteger_nb.ledger.budget import LedgerSpend, make_budget, parse_budget
from pienteger_nb.types import CallRecord, Estimate

psycopg = pytest.importorskip("psycopg")

ROOT = Path(__file__).resolve().parent.parent
MODEL = "text-davinci-003"
PROMPT = "Tell me a story about a brave little robot."


@pytest.fixture(params=BACKENDS)
def ledger(request, tmp_path):
    with open_ledger(request, tmp_path / "ledger" / "usage.sqlite", store_prompts=False) as opened:
        yield opened


@pytest.fixture
def team_env(pg_url, monkeypatch):
    """PIENTEGER_USAGE_DB names the test's database; the process's team ledgers closed after."""
    from pienteger_nb.ledger.backend import close_team_logs

    monkeypatch.setenv("PIENTEGER_USAGE_DB", pg_url)
    yield pg_url
    close_team_logs()


def _spent(user: str, tokens: int, *, when: _dt.datetime | None = None) -> CallRecord:
    return CallRecord(time=when or _dt.datetime.now(_dt.UTC), source="client", model="m", status="ok",
                      prompt_tokens=tokens // 2, completion_tokens=tokens - tokens // 2, total_tokens=tokens,
                      usage_source="reported", request_id=f"req-{user}-{tokens}")


def _policy(ledger, scope: str, limit: int = 100, *, clock=time.time) -> LedgerSpend:
    return LedgerSpend(ledger, clock=clock, budget=lambda: make_budget(tokens=limit, per="day", scope=scope))


def test_a_user_budget_counts_that_user_and_a_team_budget_everyone(ledger, monkeypatch):
    for user, tokens in (("ada", 30), ("bob", 50), ("ada", 10)):
        monkeypatch.setenv("JUPYTERHUB_USER", user)
        ledger.record(_spent(user, tokens))
    yesterday = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=1)
    ledger.record(_spent("ada", 1000, when=yesterday))  # another day: not in today's budget
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    assert _policy(ledger, "user").status()[2] == 40
    assert _policy(ledger, "team").status()[2] == 90
    ticket = _policy(ledger, "user").reserve(Estimate(1, 10, 50, None, "m"))  # 40 + 60 fits 100
    with pytest.raises(BudgetExceededError, match=r"spent 90 tokens \(\+60 tokens held.*by the team today"):
        _policy(ledger, "team").reserve(Estimate(1, 0, 1, None, "m"))  # ada's held call counts for the team
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    bob = _policy(ledger, "user").reserve(Estimate(1, 10, 40, None, "m"))  # bob: 50 of his own, ada's hold not his
    assert bob is not None
    with pytest.raises(BudgetExceededError, match="by this user") as refused:
        _policy(ledger, "user").reserve(Estimate(1, 0, 1, None, "m"))
    assert "per='day'" in refused.value.advice and "scope" not in refused.value.advice
    _policy(ledger, "user").settle(ticket, None)
    _policy(ledger, "user").settle(bob, None)
    assert _policy(ledger, "team").status()[3:] == (0.0, 0)


def test_an_expired_reservation_stops_blocking(ledger):
    now = time.time()
    crashed = _policy(ledger, "team", clock=lambda: now)
    assert crashed.reserve(Estimate(1, 10, 70, None, "m")) is not None  # never settled: a killed kernel
    with pytest.raises(BudgetExceededError, match="held by calls running now"):
        _policy(ledger, "team", clock=lambda: now + 599).reserve(Estimate(1, 10, 20, None, "m"))
    later = _policy(ledger, "team", clock=lambda: now + 601)
    ticket = later.reserve(Estimate(1, 10, 20, None, "m"))
    assert later.status()[4] == 30  # only the live reservation is held
    later.settle(ticket, None)
    assert later.status()[4] == 0


def test_budget_text_and_magic_take_a_scope(ip, capsys):
    assert parse_budget("5/day/team").scope == "team" and parse_budget("5/day").scope == "user"
    assert parse_budget("200000tokens/month/user").tokens == 200000
    with pytest.raises(ValueError, match="scope=.everyone.: choose .user."):
        parse_budget("5/day/everyone")
    with pytest.raises(ValueError, match="scope="):
        pienteger_nb.set_budget(5, scope="org")
    ip.run_line_magic("pienteger", "budget 5 --per month --scope team")
    from pienteger_nb.ledger.budget import current_budget

    assert current_budget() == make_budget(5, per="month", scope="team")
    assert "for the team" in capsys.readouterr().out
    ip.run_line_magic("pienteger", "budget 7 --scope user --per day")
    assert current_budget() == make_budget(7, per="day", scope="user")


def test_the_team_ledger_keeps_the_prompt_ratio_and_the_totals(team_env, emulator):
    with Client(api_key=TEST_KEY, base_url=emulator.url, sleep=lambda s: None) as client:
        first = client.estimate("xxxxxxxx " * 50, max_tokens=1)
        assert first.prompt_tokens == 113  # 4 characters a token: nothing seen yet
        client.complete("xxxxxxxx " * 50, max_tokens=1)
        spend = LedgerSpend(budget=lambda: make_budget(tokens=10**6, per="total", scope="team"))
        spend._ratios.clear()
        learned = Client(api_key=TEST_KEY, base_url=emulator.url, spend=spend).estimate("xxxxxxxx " * 50, max_tokens=1)
    reported = pienteger_nb.usage()["prompt_tokens"].iloc[-1]
    assert learned.prompt_tokens == reported != 113
    assert spend.status()[2] == pienteger_nb.usage()["total_tokens"].sum()


_WORKER = """
import os, sys
from pienteger_nb import BudgetExceededError, Client
calls = 0
with Client(api_key=os.environ['KEY'], base_url=os.environ['URL'], sleep=lambda s: None) as client:
    client.estimate('warm up', max_tokens=1)  # connects (and migrates) before the start gate
    print('ready', flush=True)
    sys.stdin.readline()  # the start gate: every worker begins at once
    while True:
        try:
            client.complete(os.environ['PROMPT'], max_tokens=40)
        except BudgetExceededError:
            break
        calls += 1
print(calls)
"""


def test_eight_processes_on_one_team_budget_never_pass_it(team_env, emulator, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({MODEL: {"prompt": 0.01, "completion": 0.03}}))
    set_prices({MODEL: {"prompt": 0.01, "completion": 0.03}})
    with Client(api_key=TEST_KEY, base_url=emulator.url) as client:
        worst = client.estimate(PROMPT, max_tokens=40).cost_max
    assert worst is not None
    limit = 50 * worst
    emulator.latency = 0.01  # calls overlap, so the processes really contend for the budget
    envs = [  # eight users: a team budget counts them all
        {**os.environ, "PYTHONPATH": str(ROOT), "KEY": TEST_KEY, "URL": emulator.url, "PROMPT": PROMPT,
         "PIENTEGER_PRICES": str(prices), "PIENTEGER_BUDGET": f"{limit!r}/day/team",
         "JUPYTERHUB_USER": f"analyst{n}", "PIENTEGER_USAGE_DB": team_env}
        for n in range(8)
    ]
    counts = [int(out.strip()) for out in run_together(_WORKER, envs)]
    frame = pienteger_nb.usage()
    assert len(frame) == sum(counts) and (frame["status"] == "ok").all()
    assert frame["cost"].sum() <= limit + 1e-12
    assert sum(counts) >= 45
    assert sum(1 for c in counts if c) >= 2  # they really ran side by side
    by_user = pienteger_nb.usage_summary(by="user")
    assert by_user["calls"].sum() == sum(counts)
    assert set(by_user.index) == {f"analyst{n}" for n, c in enumerate(counts) if c}
    with psycopg.connect(team_env) as conn:
        assert conn.execute("SELECT count(*) FROM spend_reservations").fetchone() == (0,)  # all settled
        team_total = conn.execute("SELECT usd FROM spend_totals WHERE scope = 'team' AND period = 'total'").fetchone()
    assert team_total[0] == pytest.approx(frame["cost"].sum())


def test_usage_summary_by_user_on_the_team_ledger(team_env, monkeypatch):
    from pienteger_nb.ledger import record_call

    for user, tokens in (("ada", 3), ("bob", 5), ("ada", 7)):
        monkeypatch.setenv("JUPYTERHUB_USER", user)
        record_call(_spent(user, tokens))
    summary = pienteger_nb.usage_summary(by="user")
    assert summary.index.name == "user"
    assert summary.loc["ada", "calls"] == 2 and summary.loc["ada", "total_tokens"] == 10
    assert summary.loc["bob", "total_tokens"] == 5


@pytest.fixture
def client(team_env, emulator):
    with Client(api_key=TEST_KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


def test_cache_miss_hit_and_refresh_on_the_team_ledger(client, emulator):
    set_prices({MODEL: 0.02})
    first = client.complete("Say this is a test", max_tokens=7, temperature=0)
    sent = len(emulator.requests)
    again = client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert len(emulator.requests) == sent and again.text == first.text  # a hit: nothing sent
    client.complete("Say this is a test", max_tokens=8, temperature=0)  # another parameter: a miss
    assert len(emulator.requests) == sent + 1
    fresh = client.complete("Say this is a test", max_tokens=7, temperature=0, refresh=True)
    assert len(emulator.requests) == sent + 2 and fresh.request_id != first.request_id
    replayed = client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert replayed.request_id == fresh.request_id  # the refresh replaced the stored answer
    frame = pienteger_nb.usage()
    assert frame["cached"].tolist() == [False, True, False, False, True]
    assert frame.loc[frame["cached"], "cost"].tolist() == [0.0, 0.0]
    stats = pienteger_nb.ledger.cache_stats()
    assert (stats.entries, stats.replays) == (2, 2)
    assert stats.tokens_saved == 2 * first.usage.total_tokens
    assert pienteger_nb.clear_cache() == 2
    client.complete("Say this is a test", max_tokens=7, temperature=0)
    assert len(emulator.requests) == sent + 3  # cleared: called again


@pytest.mark.parametrize("store_prompts", [False, True])
def test_the_team_cache_keeps_the_prompt_only_with_store_prompts(client, team_env, store_prompts):
    pienteger_nb.config.set_kernel("store_prompts", store_prompts)
    client.complete("A secret-ish prompt", max_tokens=5, temperature=0)
    with psycopg.connect(team_env) as conn:
        rows = conn.execute("SELECT prompt, answer FROM replay_cache").fetchall()
    assert len(rows) == 1 and (rows[0][0] == "A secret-ish prompt") is store_prompts
    assert (rows[0][0] is None) is not store_prompts


def test_the_team_cache_calls_the_service_while_the_server_is_down(client, emulator, pg_cluster):
    import warnings

    client.complete("Say this is a test", max_tokens=7, temperature=0)
    sent = len(emulator.requests)
    pg_cluster.stop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = client.complete("Say this is a test", max_tokens=7, temperature=0)
    finally:
        pg_cluster.start()
    assert answer.text and len(emulator.requests) == sent + 1


def test_a_database_from_the_release_before_gains_the_totals_of_its_rows(pg_url, tmp_path, monkeypatch):
    from pienteger_nb.ledger.postgres import PostgresLog
    from pienteger_nb.ledger.schema import SCHEMA_VERSION

    with PostgresLog(pg_url, spool=tmp_path / "spool.sqlite") as old:
        old.open()
        with psycopg.connect(pg_url, autocommit=True) as conn:  # as version 5 left it: no spend tables
            conn.execute("DROP TRIGGER calls_spend ON calls")
            conn.execute("DROP TABLE spend_totals, spend_reservations, prompt_ratio, replay_cache")
            conn.execute("UPDATE schema_version SET version = 5")
        for user, tokens in (("ada", 30), ("bob", 50)):
            monkeypatch.setenv("JUPYTERHUB_USER", user)
            old.record(_spent(user, tokens))
    with PostgresLog(pg_url, spool=tmp_path / "spool.sqlite") as new:
        assert new.open() == SCHEMA_VERSION
        monkeypatch.setenv("JUPYTERHUB_USER", "ada")
        assert _policy(new, "team", limit=1000).status()[2] == 80
        assert _policy(new, "user", limit=1000).status()[2] == 30


def test_a_budget_that_cannot_be_checked_refuses_with_the_password_masked(pg_cluster, pg_url, tmp_path):
    from pienteger_nb.ledger.postgres import PostgresLog

    with PostgresLog(pg_url, spool=tmp_path / "spool.sqlite") as team:
        team.open()
        pg_cluster.stop()
        try:
            with pytest.raises(BudgetExceededError, match="cannot be checked.*unreachable") as refused:
                _policy(team, "team").reserve(Estimate(1, 10, 20, None, "m"))
        finally:
            pg_cluster.start()
        assert pg_cluster.password not in str(refused.value) and "****" in str(refused.value)
        assert "set_budget(None)" in refused.value.advice
        assert _policy(team, "team").reserve(Estimate(1, 10, 20, None, "m")) is not None  # back: checked again
