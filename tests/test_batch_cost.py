"""What a batch spent: the result frame's ``cost`` and ``cached`` columns (the same figures as
the ledger rows), compare()'s ``cost``, and the progress line's cost so far. Prices are set with
set_prices; the calls go to the emulator over loopback and a real SQLite ledger."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest
from conftest import TEST_KEY

from pienteger_nb import Client, compare, complete_many, set_prices, usage
from pienteger_nb.batch.progress import TextProgress, describe
from pienteger_nb.ledger.prices import format_usd

PROMPTS = [f"Tell me about item number {i}." for i in range(6)]
PRICE = (0.02, 0.04)  # USD per 1K prompt, completion tokens


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def client(emulator: Any) -> Client:
    with Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0) as c:
        yield c


def _sent(emulator: Any) -> int:
    return sum(1 for r in emulator.requests if r.path.endswith("/completions"))


def _priced(df: pd.DataFrame) -> list[float]:
    return [(p * PRICE[0] + c * PRICE[1]) / 1000 for p, c in zip(df["prompt_tokens"], df["completion_tokens"])]


# --- the progress line -------------------------------------------------------------------------


def test_describe_puts_the_spending_after_the_errors() -> None:
    assert describe(5, 10, 1, 1.0, spent="$0.0123") == "5/10 · 1 error · $0.0123 · 5.0/s · ETA 1.0s"
    assert describe(5, 10, 0, 1.0) == "5/10 · 5.0/s · ETA 1.0s"


def test_text_progress_shows_the_cost_so_far_priced_unpriced_and_cached() -> None:
    clock, out = Clock(), io.StringIO()
    p = TextProgress(4, stream=out, interval=0.0, clock=clock)
    p.update(0)
    assert "$" not in out.getvalue() and "unpriced" not in out.getvalue()  # nothing answered yet
    p.add_cost(0.0125)
    clock.t += 1
    p.update(1)
    assert out.getvalue().split("\r")[-1].startswith("batch 1/4 · $0.0125 · ")
    p.add_cost(0.0, cached=True)
    clock.t += 1
    p.update(2)
    assert "batch 2/4 · $0.0125 · 1 cached · " in out.getvalue().split("\r")[-1]
    p.add_cost(None)  # a row whose model has no price: its cost is unknown, not 0
    p.update(3, 1)
    p.close()
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("batch 3/4 · 1 error · $0.0125 + 1 unpriced · 1 cached · ")


def test_text_progress_of_unpriced_rows_says_unpriced() -> None:
    out = io.StringIO()
    p = TextProgress(2, stream=out, interval=0.0, clock=Clock())
    p.add_cost(None)
    p.add_cost(None)
    p.update(2)
    p.close()
    assert "· unpriced ·" in out.getvalue() and "$" not in out.getvalue()


def test_the_batch_progress_line_ends_with_what_the_frame_says_it_cost(client: Client, capsys: Any) -> None:
    set_prices({"text-davinci-003": PRICE})
    df = complete_many(PROMPTS, client=client, progress="text", concurrency=2, max_tokens=5, temperature=0.7)
    last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
    assert last.startswith(f"batch 6/6 · {format_usd(float(df['cost'].sum()))} · "), last


# --- the result frame --------------------------------------------------------------------------


def test_each_row_costs_what_its_ledger_row_records(client: Client, emulator: Any) -> None:
    set_prices({"text-davinci-003": PRICE})
    df = complete_many(PROMPTS, client=client, progress=False, max_tokens=5, temperature=0.7)
    assert str(df["cost"].dtype) == "Float64" and df["cached"].dtype == bool
    assert df["cost"].tolist() == pytest.approx(_priced(df))
    assert not df["cached"].any()
    ledger = usage().set_index("request_id")["cost"]
    assert [ledger[rid] for rid in df["request_id"]] == pytest.approx(df["cost"].tolist())


def test_an_unpriced_model_gives_na_and_a_failed_row_no_cost(client: Client, emulator: Any) -> None:
    set_prices({"text-ada-001": 1.0})
    emulator.queue_fault("status", status=400, times=1)
    df = complete_many(PROMPTS[:3], client=client, progress=False, concurrency=1, max_tokens=5)
    assert (df["status"] == "error").sum() == 1
    assert df["cost"].isna().all()  # unpriced and failed alike: NA, never 0
    assert not df["cached"].any()


def test_a_replayed_batch_is_cached_and_costs_nothing(client: Client, emulator: Any) -> None:
    set_prices({"text-davinci-003": PRICE})
    first = complete_many(PROMPTS, client=client, progress=False, max_tokens=5, temperature=0)
    assert _sent(emulator) == len(PROMPTS) and first["cost"].gt(0).all()
    again = complete_many(PROMPTS, client=client, progress=False, max_tokens=5, temperature=0)
    assert _sent(emulator) == len(PROMPTS)  # every row answered from the ledger's store
    assert again["cached"].all() and (again["cost"] == 0).all()
    assert again["text"].tolist() == first["text"].tolist()
    assert again["total_tokens"].tolist() == first["total_tokens"].tolist()  # the original counts
    fresh = complete_many(PROMPTS[:2], client=client, progress=False, max_tokens=5, temperature=0, cache=False)
    assert not fresh["cached"].any() and fresh["cost"].gt(0).all()


def test_resume_keeps_the_cost_and_cached_of_the_rows_already_done(client: Client, emulator: Any) -> None:
    set_prices({"text-davinci-003": PRICE})
    emulator.queue_fault("status", status=500, times=1)
    first = complete_many(PROMPTS[:3], client=client, progress=False, concurrency=1, max_tokens=5,
                          temperature=0.7)
    assert (first["status"] == "error").sum() == 1
    done = complete_many(PROMPTS[:3], client=client, progress=False, max_tokens=5, temperature=0.7,
                         resume=first)
    kept = first["status"] == "ok"
    assert done.loc[kept, "cost"].tolist() == first.loc[kept, "cost"].tolist()
    assert done["cost"].notna().all() and done["cost"].tolist() == pytest.approx(_priced(done))
    assert done["cached"].dtype == bool and not done["cached"].any()


# --- compare -----------------------------------------------------------------------------------


def test_compare_fills_cost_from_the_rows(client: Client) -> None:
    set_prices({"text-ada-001": PRICE})
    df = compare("Say hi", models=["text-ada-001", "text-curie-001"], temperature=0.7, client=client,
                 max_tokens=5)
    by_model = df.set_index("model")
    ada = by_model.loc["text-ada-001"]
    assert ada["cost"] == pytest.approx((ada["prompt_tokens"] * PRICE[0] + ada["completion_tokens"] * PRICE[1]) / 1000)
    assert pd.isna(by_model.loc["text-curie-001", "cost"])  # unpriced: NA, never 0
    ledger = usage().set_index("model", drop=False)
    assert ledger.loc[ledger["source"] == "compare"].set_index("model")["cost"].dropna().tolist() == \
        pytest.approx([ada["cost"]])
