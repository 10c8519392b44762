"""The PromptForm's status line and history say what a call cost: the same figure as its ledger
row, "unpriced" for a model without a price, "cached" for a replay. Buttons are pressed from
Python against the emulator over loopback; the ledger is a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import TEST_KEY

from pienteger_nb import Client, PromptForm, set_prices, usage
from pienteger_nb.ledger.prices import format_usd

WAIT = 15.0  # seconds: a bound for joins on a busy machine, never a sleep


@pytest.fixture
def form(emulator: Any) -> Iterator[PromptForm]:
    # No on_call: the calls go to the default ledger, so the status can be checked against the row.
    client = Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0)
    f = PromptForm(client)
    yield f
    f.close()
    client.close()


def _submit(form: PromptForm, prompt: str, *, temperature: float) -> None:
    form.prompt.value = prompt
    form.max_tokens.value = 16
    form.temperature.value = temperature
    assert form.submit() is not None, form.status_text
    assert form.wait(WAIT)


def _sent(emulator: Any) -> int:
    return sum(1 for r in emulator.requests if r.path.endswith("/completions"))


def test_status_shows_the_cost_the_ledger_recorded(form: PromptForm) -> None:
    set_prices({"text-davinci-003": (0.02, 0.04)})
    _submit(form, "Once upon a time", temperature=0.7)
    c = form.result
    assert c is not None and not c.cached
    expected = (c.usage.prompt_tokens * 0.02 + c.usage.completion_tokens * 0.04) / 1000
    row = usage().iloc[-1]
    assert row["source"] == "form" and row["cost"] == pytest.approx(expected)
    assert f" · {format_usd(expected)} · " in form.status_text
    assert form.status_text.startswith("text-davinci-003 · ")
    assert form.history[-1]["cost"] == pytest.approx(expected) and form.history[-1]["cached"] is False
    assert format_usd(expected) in form.history_view.value


def test_an_unpriced_model_says_unpriced_never_zero(form: PromptForm) -> None:
    set_prices({"some-other-model": 1.0})
    _submit(form, "Once upon a time", temperature=0.7)
    assert " · unpriced · " in form.status_text
    assert "$0" not in form.status_text
    assert form.history[-1]["cost"] is None


def test_a_replayed_call_says_cached_and_costs_nothing(form: PromptForm, emulator: Any) -> None:
    set_prices({"text-davinci-003": 0.02})
    _submit(form, "Say this is a test", temperature=0)
    first = form.status_text
    assert "cached" not in first and " · $" in first
    _submit(form, "Say this is a test", temperature=0)
    assert _sent(emulator) == 1  # the second answer came from the ledger's store
    assert form.result is not None and form.result.cached
    assert " · cached · " in form.status_text and "$" not in form.status_text
    assert form.history[-1]["cost"] == 0.0 and form.history[-1]["cached"] is True
    assert usage()["cached"].tolist() == [False, True]
    assert "<td>cached</td>" in form.history_view.value
