"""The spend columns: cost at record time, cached, notebook and user; the v5 migration; summaries."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3

import pytest

from pienteger_nb.ledger import UsageLog, schema
from pienteger_nb.ledger.prices import set_prices
from pienteger_nb.types import CallRecord

T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_prices():
    set_prices(None)
    yield
    set_prices(None)


def call(model: str = "A", p: int = 1000, c: int = 500, **fields) -> CallRecord:
    return CallRecord(time=fields.pop("time", T0), source="client", model=model, status="ok", prompt_tokens=p,
                      completion_tokens=c, total_tokens=p + c, usage_source="reported", prompt="x" * 40,
                      **fields)


def test_cost_is_fixed_when_recorded_and_changing_prices_never_rewrites_it(tmp_path):
    with UsageLog(tmp_path / "u.sqlite") as log:
        set_prices({"A": {"prompt": 0.01, "completion": 0.03}})
        log.record(call())
        set_prices({"A": 1.0})
        log.record(call())
        log.record(call("unpriced-model"))
        log.record(call(cached=True))
        log.record(call("unpriced-model", cached=True))
        cost = log.frame()["cost"]
    assert str(cost.dtype) == "Float64"
    assert cost[0] == pytest.approx(0.025) and cost[1] == pytest.approx(1.5)
    assert cost.isna().tolist() == [False, False, True, False, False]  # NA when unpriced, never 0
    assert cost[3] == 0 and cost[4] == 0  # a replayed answer is free, priced or not


def test_notebook_and_user_come_from_the_kernel_and_environment(tmp_path, monkeypatch, ip):
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/ada/from-env.ipynb")
    ip.user_ns.pop("__session__", None)
    with UsageLog(tmp_path / "u.sqlite") as log:
        log.record(call())
        ip.user_ns["__session__"] = "/home/ada/analysis.ipynb"
        try:
            log.record(call())
        finally:
            del ip.user_ns["__session__"]
        monkeypatch.delenv("JPY_SESSION_NAME")
        monkeypatch.delenv("JUPYTERHUB_USER")
        log.record(call(notebook="given.ipynb"))
        log.record(call())
        frame = log.frame()
    assert frame["notebook"].tolist() == ["/home/ada/from-env.ipynb", "/home/ada/analysis.ipynb", "given.ipynb", ""]
    import getpass

    assert frame["user"].tolist() == ["ada", "ada", getpass.getuser(), getpass.getuser()]
    assert str(frame["notebook"].dtype) == "string" and str(frame["cached"].dtype) == "bool"


def _write_v4_file(path) -> None:
    """A ledger as today's release (schema v4) writes it, with one row."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in schema.MIGRATIONS[:4]:
        for statement in step:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    columns = schema.INSERT_COLUMNS[: schema.INSERT_COLUMNS.index("text") + 1]
    values = schema.row_values(call(time=T0 - dt.timedelta(days=40)), store_prompts=False)[: len(columns)]
    conn.execute(f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
    conn.close()


def test_a_file_written_by_the_current_release_migrates_and_keeps_its_row(tmp_path):
    path = tmp_path / "old.sqlite"
    _write_v4_file(path)
    set_prices({"A": 0.02})
    with UsageLog(path) as log:
        assert log.schema_version == len(schema.MIGRATIONS) >= 5
        log.record(call())
        frame = log.frame()
        with log.reading() as conn:
            totals = dict(conn.execute("SELECT period, tokens FROM spend_totals").fetchall())
    assert len(frame) == 2
    assert math.isnan(frame["cost"].astype(float)[0])  # an old row: no cost was recorded then
    assert frame["cost"][1] == pytest.approx(0.03)
    assert frame["cached"].tolist() == [False, False] and frame["notebook"].tolist()[0] == ""
    # the running totals include the old row's tokens (backfilled) and the new one's
    assert totals["total"] == 3000 and totals["month:2026-11"] == 1500


def test_summaries_show_the_recorded_cost_by_notebook_cell_and_user(tmp_path, monkeypatch):
    set_prices({"A": 0.02})
    with UsageLog(tmp_path / "u.sqlite") as log:
        monkeypatch.setenv("JUPYTERHUB_USER", "ada")
        log.record(call(notebook="a.ipynb", execution_count=1))
        log.record(call(notebook="a.ipynb", execution_count=1))
        log.record(call(notebook="a.ipynb", execution_count=2, cached=True))
        monkeypatch.setenv("JUPYTERHUB_USER", "bob")
        log.record(call("B", notebook="b.ipynb"))
        by_notebook = log.summary("notebook")
        by_cell = log.summary("cell")
        by_user = log.summary("user")
        overridden = log.summary("model", prices={"A": 1.0, "B": 1.0})
    assert by_notebook.loc["a.ipynb", "cost"] == pytest.approx(0.06)
    assert math.isnan(by_notebook.loc["b.ipynb", "cost"])  # B is unpriced: unknown, not 0
    assert by_cell.index.names == ["notebook", "execution_count"]
    assert by_cell.loc[("a.ipynb", 1), "calls"] == 2 and by_cell.loc[("a.ipynb", 2), "cost"] == 0
    assert by_user.loc["ada", "calls"] == 3 and by_user.loc["bob", "calls"] == 1
    assert overridden.loc["B", "cost"] == pytest.approx(1.5)
