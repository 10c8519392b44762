"""Summaries (checked against figures worked out by hand), costs, text, export, plot and the CLI."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
from pg import BACKENDS, location, open_ledger

from pienteger_nb.ledger.default import summary_text, usage_summary
from pienteger_nb.ledger.store import UsageLog, UsageLogError
from pienteger_nb.ledger.usage_cli import add_usage_arguments, run_usage
from pienteger_nb.types import CallRecord

DAY1 = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
DAY2, DAY3 = DAY1 + dt.timedelta(days=1), DAY1 + dt.timedelta(days=2)

# model, source, start, status, prompt, completion, total tokens, latency
ROWS = [
    ("A", "magic", DAY1, "ok", 10, 20, 30, 0.1),
    ("A", "magic", DAY1, "ok", 5, 5, 10, 0.2),
    ("A", "client", DAY2, "error", None, None, None, 0.05),
    ("A", "batch", DAY2, "ok", 1, 2, 3, 0.3),
    ("A", "batch", DAY2, "ok", 2, 2, 4, 0.4),
    ("A", "batch", DAY3, "ok", 3, 3, 6, 1.0),
    ("B", "form", DAY3, "cancelled", 4, 6, 10, 5.0),
    ("B", "client", DAY3, "ok", 100, 50, 150, 2.0),
]
COLUMNS = ["calls", "errors", "cancelled", "prompt_tokens", "completion_tokens", "total_tokens",
           "mean_latency_s", "p95_latency_s", "cost"]


@pytest.fixture(params=BACKENDS)
def log(request, tmp_path):
    with open_ledger(request, tmp_path / "views.sqlite") as opened:
        for i, (model, source, start, status, pt, ct, tt, latency) in enumerate(ROWS):
            opened.record(CallRecord(
                time=start + dt.timedelta(minutes=i), source=source, model=model, status=status,
                error="BadRequestError: no" if status == "error" else "", prompt_tokens=pt, completion_tokens=ct,
                total_tokens=tt, usage_source=None if tt is None else "reported", latency_s=latency,
                request_id=f"r{i}",
            ))
        yield opened


def figures(summary: pd.DataFrame, key) -> list:
    return [summary.loc[key, c] for c in COLUMNS if c != "cost"]


def test_summary_by_model(log):
    s = log.summary("model")
    assert list(s.columns) == COLUMNS and s.index.name == "model" and list(s.index) == ["A", "B"]
    # A: ok latencies 0.1 0.2 0.3 0.4 1.0 -> mean 0.4; p95 at position 3.8 -> 0.4 + 0.8 * 0.6 = 0.88
    assert figures(s, "A") == pytest.approx([6, 1, 0, 21, 32, 53, 0.4, 0.88])
    # B: the cancelled call's 5 s is not a latency; its tokens are spent all the same
    assert figures(s, "B") == pytest.approx([2, 0, 1, 104, 56, 160, 2.0, 2.0])
    assert s["calls"].dtype == "int64" and s["total_tokens"].dtype == "int64"


def test_summary_by_day(log):
    s = log.summary("day")
    assert s.index.name == "day" and list(s.index) == [DAY1.date(), DAY2.date(), DAY3.date()]
    assert figures(s, DAY1.date()) == pytest.approx([2, 0, 0, 15, 25, 40, 0.15, 0.195])
    assert figures(s, DAY2.date()) == pytest.approx([3, 1, 0, 3, 4, 7, 0.35, 0.395])
    assert figures(s, DAY3.date()) == pytest.approx([3, 0, 1, 107, 59, 166, 1.5, 1.95])


def test_summary_by_source(log):
    s = log.summary("source")
    assert s.index.name == "source" and sorted(s.index) == ["batch", "client", "form", "magic"]
    assert figures(s, "magic") == pytest.approx([2, 0, 0, 15, 25, 40, 0.15, 0.195])
    # batch: 0.3 0.4 1.0 -> p95 at position 1.9 -> 0.4 + 0.9 * 0.6 = 0.94
    assert figures(s, "batch") == pytest.approx([3, 0, 0, 6, 7, 13, 1.7 / 3, 0.94])
    assert s.loc["client", "errors"] == 1 and s.loc["client", "total_tokens"] == 150
    assert s.loc["form", "cancelled"] == 1 and math.isnan(s.loc["form", "mean_latency_s"])


def test_summary_since_and_the_public_function(log, monkeypatch):
    assert list(log.summary("day", since="2026-11-02")["calls"]) == [3, 3]
    monkeypatch.setenv("PIENTEGER_USAGE_DB", location(log))
    assert usage_summary("model", since=DAY3).loc["A", "calls"] == 1


def test_prices_give_a_cost_and_nan_where_unknown(log):
    s = log.summary("model", prices={"A": 0.02, "B": {"prompt": 0.01, "completion": 0.03}})
    assert s.loc["A", "cost"] == pytest.approx(53 * 0.02 / 1000)
    assert s.loc["B", "cost"] == pytest.approx((104 * 0.01 + 56 * 0.03) / 1000)
    partial = log.summary("model", prices={"A": 0.02})
    assert partial.loc["A", "cost"] == pytest.approx(0.00106) and math.isnan(partial.loc["B", "cost"])
    days = log.summary("day", prices={"A": 0.02})
    # day 3 has a call to B, which has no price: its cost is unknown, not the partial sum
    assert list(days["cost"].iloc[:2]) == pytest.approx([40 * 0.02 / 1000, 7 * 0.02 / 1000])
    assert math.isnan(days["cost"].iloc[2])
    # Without prices= the cost is what each row was recorded with: none were priced then.
    assert log.summary("model")["cost"].isna().all()


def test_a_call_that_used_no_tokens_costs_nothing_even_without_a_price(log):
    # A typo in a model name (a 404 with no tokens) must not make a whole day's cost unknown.
    log.record(CallRecord(time=DAY2, source="client", model="no-such-model", status="error",
                          error="NotFoundError: no", http_status=404))
    days = log.summary("day", prices={"A": 0.02, "B": 0.01})
    assert days["cost"].tolist() == pytest.approx([40 * 0.02 / 1000, 7 * 0.02 / 1000, (6 * 0.02 + 160 * 0.01) / 1000])
    assert log.summary("model", prices={"A": 0.02, "B": 0.01}).loc["no-such-model", "cost"] == 0


@pytest.mark.parametrize(("prices", "message"), [
    ({"A": "cheap"}, "price for 'A'"),
    ({"A": {"prompt": 0.01}}, "'prompt' and 'completion'"),
    ({"A": -1}, "negative"),
])
def test_bad_prices_are_refused(log, prices, message):
    with pytest.raises(ValueError, match=message):
        log.summary(prices=prices)


def test_bad_by_names_the_choices(log):
    with pytest.raises(ValueError, match="by='week': choose one of model, day, source"):
        log.summary("week")


def test_summary_text_is_a_readable_table(log):
    text = log.summary_text("model", prices={"A": 0.02})
    lines = text.splitlines()
    assert lines[0].split() == ["model", *COLUMNS]
    assert lines[1].split() == ["A", "6", "1", "0", "21", "32", "53", "0.400", "0.880", "$0.0011"]
    assert lines[2].split() == ["B", "2", "0", "1", "104", "56", "160", "2.000", "2.000", "unpriced"]
    assert f"8 calls, 213 tokens, 1 error, 1 cancelled (ledger: {log.path})" in text


def test_summary_text_of_an_empty_ledger_and_the_default_one(tmp_path):
    with UsageLog(tmp_path / "empty.sqlite") as empty:
        assert empty.summary_text(since="1d") == f"No calls recorded since 1d (ledger: {empty.path})."
    assert summary_text().startswith("No calls recorded (ledger: ")


def test_export_csv_round_trip(log, tmp_path):
    path = log.export(tmp_path / "out" / "calls.csv")
    back = pd.read_csv(path)
    frame = log.frame()
    assert list(back.columns) == list(frame.columns)
    assert (pd.to_datetime(back["time"], utc=True) == frame["time"]).all()
    assert list(back["request_id"]) == list(frame["request_id"])
    assert list(back["total_tokens"].astype("Int64")) == list(frame["total_tokens"])
    assert list(back["status"]) == list(frame["status"]) and back["latency_s"].tolist() == frame["latency_s"].tolist()


def test_export_parquet(log, tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pyarrow"):
            log.export(tmp_path / "calls.parquet")
        return
    back = pd.read_parquet(log.export(tmp_path / "calls.parquet"))
    assert list(back["request_id"]) == list(log.frame()["request_id"])


def test_plot_draws_tokens_per_model(log, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = log.plot()
    try:
        assert sorted(line.get_label() for line in ax.get_lines()) == ["A", "B"]
        assert ax.get_ylabel() == "tokens" and "by model" in ax.get_title()
        per_hour = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        # the calls span 2 days and a few minutes: hourly points, at the three hours that had calls
        assert per_hour == {"A": [40, 7, 6], "B": [0, 0, 160]}
    finally:
        plt.close("all")


def test_plot_of_an_empty_ledger_says_so(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with UsageLog(tmp_path / "e.sqlite") as empty:
        ax = empty.plot()
    assert "no calls" in ax.get_title()
    plt.close("all")


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path):
    code = (
        "import sys\nsys.modules['matplotlib'] = None\nsys.modules['matplotlib.pyplot'] = None\n"
        "from pienteger_nb.ledger.store import UsageLog\n"
        "try:\n    UsageLog(':memory:').plot()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "plotting usage needs matplotlib: pip install matplotlib"


def cli(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pienteger-nb usage")
    add_usage_arguments(parser)
    return parser.parse_args(list(words))


def test_cli_prints_the_summary_and_exports(log, tmp_path, capsys):
    target = tmp_path / "rows.csv"
    assert run_usage(cli("--db", location(log), "--by", "day", "--since", "2026-11-02", "--export", str(target))) == 0
    out = capsys.readouterr().out
    assert "2026-11-02" in out and "2026-11-01" not in out.split("\n\n")[0]
    assert f"Wrote the rows to {target}" in out and len(pd.read_csv(target)) == 6


def test_cli_on_a_missing_ledger_and_a_bad_since(tmp_path, log, capsys):
    assert run_usage(cli("--db", str(tmp_path / "none.sqlite"))) == 0
    assert "No calls recorded yet (no ledger at" in capsys.readouterr().out
    assert not (tmp_path / "none.sqlite").exists()  # looking does not create one
    assert run_usage(cli("--db", location(log), "--since", "soon")) == 2
    assert "pienteger-nb usage: error: since='soon' is not a time" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("--by", "week")


def test_an_export_that_cannot_be_written_is_one_clear_line(log, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UsageLogError, match=r"cannot write the rows to .*a-file/rows\.csv: "):
        log.export(blocker / "rows.csv")
    assert run_usage(cli("--db", location(log), "--export", str(blocker / "rows.csv"))) == 2
    err = capsys.readouterr().err
    assert err.startswith("pienteger-nb usage: error: cannot write the rows to ") and err.count("\n") == 1


def test_the_command_line_reads_the_environment_s_ledger(log):
    env = {**os.environ, "PIENTEGER_USAGE_DB": location(log)}
    code = "import sys; from pienteger_nb.cli import main; sys.exit(main(['usage', '--by', 'source']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "magic" in out.stdout and "8 calls" in out.stdout
