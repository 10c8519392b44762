"""Estimates and budgets against the real emulator and real SQLite ledgers (processes too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TEST_KEY
from together import run_together

import pienteger_nb
from pienteger_nb import BudgetExceededError, Client, Estimate, complete_many, set_budget, set_prices, usage
from pienteger_nb.ledger import UsageLog
from pienteger_nb.ledger.budget import LedgerSpend, parse_budget

MODEL = "text-davinci-003"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(emulator):
    with Client(api_key=TEST_KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


PROMPTS = [
    "Say this is a test",
    "Tell me a story about a brave little robot.",
    "1+1=? Answer: {x} [y] (z) !!!",
    "Summarise: the quarterly numbers were up, costs were down, and the board was pleased with the plan.",
    "a b c d e f g",
]


@pytest.mark.parametrize("params", [
    {"max_tokens": 5}, {"max_tokens": 40, "temperature": 0}, {"max_tokens": 12, "n": 3},
    {"max_tokens": 8, "best_of": 3, "n": 2}, {"max_tokens": 20, "stop": ["."]}, {},
])
def test_the_estimate_is_at_least_the_real_cost_and_sends_nothing(client, emulator, params):
    set_prices({MODEL: {"prompt": 0.02, "completion": 0.04}})
    for prompt in PROMPTS:
        before = len(emulator.requests)
        estimate = client.estimate(prompt, **params)
        assert len(emulator.requests) == before  # nothing sent
        real = client.complete(prompt, **params)
        assert estimate.rows == 1
        assert estimate.max_completion_tokens >= real.usage.completion_tokens
        cost = usage()["cost"].iloc[-1]
        assert estimate.cost_max is not None and estimate.cost_max >= cost, (prompt, params, estimate, real.usage)


def test_estimate_learns_the_ratio_from_this_ledger_and_is_na_when_unpriced(client):
    first = client.estimate("xxxxxxxx " * 50, max_tokens=1)
    assert first.prompt_tokens == 113 and first.cost_max is None  # 4 characters a token, unpriced
    reported = client.complete("word " * 80, max_tokens=1).usage.prompt_tokens  # 400 characters
    learnt = LedgerSpend()
    assert learnt.chars_per_token(MODEL) == pytest.approx(400 / reported)
    assert client.with_options(spend=learnt).estimate("x" * 4000, max_tokens=1).prompt_tokens == (
        -(-4000 * reported // 400))
    both = client.estimate(["ab" * 10, "cd" * 10], max_tokens=10, n=2)
    assert both.rows == 2 and both.max_completion_tokens == 40


def test_a_usd_budget_refuses_in_one_line_and_an_unpriced_model_cannot_be_checked(client, emulator):
    set_budget(0.001, per="day")
    with pytest.raises(BudgetExceededError) as info:
        client.complete("hello", max_tokens=5)
    assert "no price" in str(info.value) and "set_prices" in str(info.value)
    set_prices({MODEL: 0.02})
    client.complete("hello", max_tokens=5)  # 7 tokens at most: fits
    sent = len(emulator.requests)
    with pytest.raises(BudgetExceededError) as info:
        client.complete("hello", max_tokens=100)
    message = str(info.value)
    assert "\n" not in message and "spent $" in message and "of $0.001" in message
    assert "up to $0.0020" in message and "set_budget(" in message and "%pienteger budget" in message
    assert len(emulator.requests) == sent  # refused before anything was sent
    assert len(usage()) == 1  # and not recorded as a call


def test_token_session_and_environment_budgets(client, monkeypatch):
    set_budget(tokens=30, per="session")
    client.complete("hello", max_tokens=10)
    with pytest.raises(BudgetExceededError, match="tokens"):
        client.complete("hello", max_tokens=25)
    set_budget(None)
    client.complete("hello", max_tokens=25)
    monkeypatch.setenv("PIENTEGER_BUDGET", "10tokens/month")
    from pienteger_nb.ledger import budget

    budget._explicit = None
    with pytest.raises(BudgetExceededError, match="this month"):
        client.complete("hello", max_tokens=5)
    assert parse_budget("5/day").usd == 5 and parse_budget("$2.5 per month").per == "month"
    assert parse_budget("200000tokens/month").tokens == 200000 and parse_budget("off") is None
    with pytest.raises(ValueError, match="5/day"):
        parse_budget("five a day")
    with pytest.raises(ValueError, match="per="):
        set_budget(5, per="week")


def test_a_killed_process_s_reservation_blocks_until_it_expires(tmp_path):
    db = tmp_path / "shared.sqlite"
    code = (
        "import sys; from pienteger_nb.ledger import UsageLog; from pienteger_nb.ledger.budget import "
        "LedgerSpend, make_budget; from pienteger_nb.types import Estimate; "
        f"p = LedgerSpend(UsageLog({str(db)!r}), budget=lambda: make_budget(tokens=100, per='total')); "
        "p.reserve(Estimate(1, 10, 80, None, 'm')); print('reserved', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "reserved"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    now = time.time()
    with UsageLog(db) as log:
        def policy(later: float) -> LedgerSpend:
            from pienteger_nb.ledger.budget import make_budget

            return LedgerSpend(log, clock=lambda: now + later, budget=lambda: make_budget(tokens=100, per="total"))

        with pytest.raises(BudgetExceededError, match="held by calls running now"):
            policy(0).reserve(Estimate(1, 10, 20, None, "m"))
        with pytest.raises(BudgetExceededError):
            policy(599).reserve(Estimate(1, 10, 20, None, "m"))
        ticket = policy(601).reserve(Estimate(1, 10, 20, None, "m"))  # the dead one has expired
        assert ticket is not None
        assert log.execute("SELECT count(*) FROM spend_reservations") == [(1,)]


_WORKER = """
import os, sys
from pienteger_nb import BudgetExceededError, Client
calls = 0
with Client(api_key=os.environ['KEY'], base_url=os.environ['URL'], sleep=lambda s: None) as client:
    print('ready', flush=True)
    sys.stdin.readline()  # the start gate: every worker begins at once
    while True:
        try:
            client.complete('Tell me a story about a brave little robot.', max_tokens=40)
        except BudgetExceededError:
            break
        calls += 1
print(calls)
"""


def test_eight_processes_sharing_a_ledger_never_pass_the_budget_together(client, emulator, tmp_path, monkeypatch):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({MODEL: {"prompt": 0.01, "completion": 0.03}}))
    monkeypatch.setenv("PIENTEGER_PRICES", str(prices))
    worst = client.estimate("Tell me a story about a brave little robot.", max_tokens=40).cost_max
    assert worst is not None
    limit = 50 * worst
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KEY": TEST_KEY, "URL": emulator.url,
           "PIENTEGER_BUDGET": f"{limit!r}/day"}
    emulator.latency = 0.01  # calls overlap, so the processes really contend for the budget
    counts = [int(out.strip()) for out in run_together(_WORKER, [env] * 8)]
    frame = usage()
    assert len(frame) == sum(counts) and (frame["status"] == "ok").all()
    assert frame["cost"].sum() <= limit + 1e-12
    assert sum(counts) >= 45
    assert sum(1 for c in counts if c) >= 2  # they really ran side by side
    with UsageLog(os.environ["PIENTEGER_USAGE_DB"]) as log:
        assert log.execute("SELECT count(*) FROM spend_reservations") == [(0,)]  # all settled


def test_a_batch_is_refused_up_front_stopped_mid_run_then_resumed(client, emulator):
    set_prices({MODEL: 0.02})
    prompts = [f"Row {i}: say something short." for i in range(6)]
    row = client.estimate(prompts[0], max_tokens=10)
    total = complete_many(prompts, client=client, dry_run=True, max_tokens=10)
    assert isinstance(total, Estimate) and total.rows == 6 and len(emulator.requests) == 0
    assert total.cost_max == pytest.approx(6 * row.cost_max)
    frame_estimate = pd.DataFrame({"x": range(6)}).pienteger.estimate("Row {x}: say something short.", max_tokens=10)
    assert frame_estimate.cost_max == pytest.approx(total.cost_max)

    set_budget(total.cost_max * 0.6)
    with pytest.raises(BudgetExceededError, match=r"this batch of 6 prompts.*3 of them would fit"):
        complete_many(prompts, client=client, progress=False, max_tokens=10)
    assert len(emulator.requests) == 0

    set_budget(total.cost_max * 2)

    def lower_the_budget(position, row) -> None:
        set_budget(row_cost_floor)  # after the first row: nothing more fits

    row_cost_floor = row.cost_max / 10
    # Rows run one at a time; each answer takes 0.3 s, so on_row (in the calling thread) lowers the
    # budget long before the worker asks to start the third row, however busy the machine.
    emulator.latency = 0.3
    with pytest.warns(pienteger_nb.batch.run.BatchInterruptedWarning, match="stopped by the budget"):
        first = complete_many(prompts, client=client, progress=False, concurrency=1, on_row=lower_the_budget,
                              max_tokens=10)
    statuses = first["status"].tolist()
    done = statuses.count("ok")
    assert 1 <= done <= 2 and statuses == ["ok"] * done + ["skipped"] * (6 - done)
    assert first["error"].iloc[-1].startswith("BudgetExceededError: budget")
    set_budget(None)
    emulator.latency = 0.0
    second = complete_many(prompts, client=client, progress=False, resume=first, max_tokens=10)
    assert (second["status"] == "ok").all()
    assert len(emulator.requests) == 6  # the skipped rows were sent once, on resume


def test_a_refused_cell_is_one_line_and_fails_and_dry_run_shows_the_estimate(ip, emulator, capsys):
    from pienteger_nb import config

    config.set_kernel("base_url", emulator.url)
    config.set_kernel_key(TEST_KEY)
    set_prices({MODEL: 0.02})
    result = ip.run_cell("%%pienteger --dry-run --max-tokens 30\nHello there")
    assert result.success and "at most $0.0007" in capsys.readouterr().out
    ip.run_line_magic("pienteger", "budget 0.0005 --per day")
    assert "of $0.0005 today" in capsys.readouterr().out
    result = ip.run_cell("%%pienteger --max-tokens 30\nHello there")
    assert not result.success
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if "refused" in line]
    assert len(lines) == 1 and "spent $0.0000 of $0.0005" in lines[0] and "Traceback" not in captured.err
    assert len(emulator.requests) == 0
    ip.run_line_magic("pienteger", "budget off")
    assert "off" in capsys.readouterr().out
