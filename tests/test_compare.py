"""compare() and %%pienteger --compare against the emulator: a row per combination, the
parameters on the wire, failed combinations in their own rows and cells, ledger rows with
source="compare", and every combination in flight at once."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import pytest
from conftest import TEST_KEY
from IPython.utils.capture import capture_output

from pienteger_nb import Client, compare, usage
from pienteger_nb.batch.comparison import COLUMNS
from pienteger_nb.errors import AuthenticationError
from pienteger_nb.notebook.compare_view import compare_bundle


@pytest.fixture
def client(emulator: Any) -> Client:
    return Client(api_key=TEST_KEY, base_url=emulator.url)


def test_one_row_per_combination_with_the_contract_columns(emulator: Any, client: Client) -> None:
    df = compare("Say hi", models=["text-ada-001", "text-curie-001"], temperature=[0, 0.8], seed=[1, 2],
                 client=client, max_tokens=5)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 8
    assert set(zip(df["model"], df["temperature"], df["seed"])) == {
        (m, t, s) for m in ("text-ada-001", "text-curie-001") for t in (0.0, 0.8) for s in (1, 2)
    }
    assert (df["error"] == "").all() and df["text"].str.len().gt(0).all()
    assert str(df["prompt_tokens"].dtype) == "Int64" and (df["completion_tokens"] == 5).all()
    assert str(df["cost"].dtype) == "Float64" and df["cost"].isna().all()  # unpriced: NA, never 0
    sent = {(r.body["model"], r.body["temperature"], r.body["seed"], r.body["max_tokens"])
            for r in emulator.requests if r.path.endswith("/completions")}
    assert sent == {(m, t, s, 5) for m in ("text-ada-001", "text-curie-001") for t in (0, 0.8) for s in (1, 2)}


def test_defaults_give_one_row_with_the_configured_model(emulator: Any, client: Client) -> None:
    df = compare("Say hi", client=client, max_tokens=3)
    assert df["model"].tolist() == ["text-davinci-003"]
    assert df["temperature"].isna().all() and df["seed"].isna().all()
    assert "temperature" not in emulator.requests[-1].body  # the service's own default applies


def test_a_failed_combination_is_its_own_row(emulator: Any, client: Client) -> None:
    df = compare("Say hi", models=["text-ada-001", "no-such-model"], temperature=0, client=client, max_tokens=4)
    ok, bad = df.iloc[0], df.iloc[1]
    assert ok["error"] == "" and ok["text"]
    assert bad["error"].startswith("NotFoundError") and "no-such-model" in bad["error"]
    assert pd.isna(bad["text"]) and pd.isna(bad["prompt_tokens"])


def test_every_call_is_a_ledger_row_with_source_compare(emulator: Any, client: Client) -> None:
    compare("Say hi", models=["text-ada-001", "no-such-model"], temperature=[0, 1], client=client, max_tokens=4)
    rows = usage()
    assert rows["source"].tolist() == ["compare"] * 4
    assert sorted(rows["status"].astype(str)) == ["error", "error", "ok", "ok"]


def test_all_combinations_are_in_flight_at_once(emulator: Any, client: Client) -> None:
    # Each request stalls until the emulator stops: all six can only have arrived together.
    emulator.queue_fault("stall", after=0, times=6)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(
        compare("Say hi", models=["text-ada-001", "text-curie-001"], temperature=[0, 0.5, 1], client=client,
                max_tokens=4)))
    worker.start()
    assert emulator.wait_for_requests(6, timeout=10)
    emulator.stop()  # releases the stalls
    worker.join(15)
    assert not worker.is_alive() and len(result[0]) == 6


def test_a_wrong_key_stops_the_comparison_with_one_error(emulator: Any) -> None:
    bad = Client(api_key="pk-wrong-key-000000", base_url=emulator.url)
    with pytest.raises(AuthenticationError):
        compare("Say hi", models=["text-ada-001", "text-curie-001"], client=bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": [0, 5]}, "temperature"),
        ({"models": []}, "models= is empty"),
        ({"temperature": ["hot"]}, "numbers"),
        ({"model": "text-ada-001"}, "models=[...]"),
        ({"stream": True}, "stream"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(emulator: Any, client: Client, kwargs: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[").replace("]", r"\]")):
        compare("Say hi", client=client, **kwargs)
    assert emulator.requests == []


def test_the_table_has_a_column_per_model_and_a_row_per_setting(emulator: Any, client: Client) -> None:
    long_prompt_df = compare("Say hi", models=["text-ada-001", "no-such-model"], temperature=[0, 0.8],
                             client=client, max_tokens=40)
    page = compare_bundle(long_prompt_df)["text/html"]
    assert page.count("<tr>") == 3  # the header and one per temperature
    assert page.index("text-ada-001") < page.index("no-such-model")
    assert "temperature 0</th>" in page and "temperature 0.8</th>" in page
    assert "white-space:pre-wrap" in page  # long texts wrap
    assert page.count("pienteger-compare-error") == 2  # the failed model's cells, one per setting
    assert "2 → 40 tokens" in page and "unpriced" in page


def test_magic_compare_shows_one_table_and_keeps_the_frame(env_emulator: Any, ip: Any) -> None:
    with capture_output() as cap:
        res = ip.run_cell("%%pienteger --compare -m text-ada-001 -m text-curie-001 -t 0 -t 0.8 "
                          "--max-tokens 6 -o cmp\nName a colour", store_history=True)
    assert res.success, res.error_in_exec
    html_outputs = [o for o in cap.outputs if "text/html" in o.data]
    assert len(html_outputs) == 1 and "pienteger-compare" in html_outputs[0].data["text/html"]
    frame = ip.user_ns.pop("cmp")
    assert isinstance(frame, pd.DataFrame) and len(frame) == 4
    assert {r.body["temperature"] for r in env_emulator.requests} == {0, 0.8}
    assert TEST_KEY not in cap.stdout + str(cap.outputs[0].data)


def test_magic_refuses_several_models_without_compare(env_emulator: Any, ip: Any) -> None:
    with capture_output() as cap:
        res = ip.run_cell("%%pienteger -m text-ada-001 -m text-curie-001\nHi")
    assert not res.success
    assert "--compare" in cap.stderr + cap.stdout + str(res.error_in_exec)
    assert env_emulator.requests == []


def test_magic_compare_refuses_background(env_emulator: Any, ip: Any) -> None:
    res = ip.run_cell("%%pienteger --compare --background -m text-ada-001\nHi")
    assert not res.success and "drop --background" in str(res.error_in_exec)


def test_an_interrupt_returns_the_finished_rows_with_a_compare_warning(
    emulator: Any, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pienteger_nb.batch.run import BatchInterruptedWarning

    emulator.queue_fault("stall", after=0, times=1)  # one combination never answers
    progress_calls: list[int] = []

    class InterruptWhenOthersAreDone:
        def update(self, done: int, errors: int) -> None:
            progress_calls.append(done)
            if done == 2 and progress_calls.count(2) == 1:
                raise KeyboardInterrupt  # as if Interrupt Kernel arrived now

        def add_cost(self, usd: float | None, *, cached: bool = False) -> None:
            pass

        def close(self, note: str = "") -> None:
            pass

    from pienteger_nb.batch import comparison

    monkeypatch.setattr(comparison, "make_progress", lambda progress, total: InterruptWhenOthersAreDone())
    with pytest.warns(BatchInterruptedWarning, match="comparison interrupted: 2 of 3"):
        df = compare("Say hi", models=["text-ada-001", "text-curie-001", "text-babbage-001"],
                     temperature=0, client=client, max_tokens=3)
    assert sorted(df["error"].tolist()) == ["", "", "cancelled"]
