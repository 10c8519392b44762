"""The team ledger on a real PostgreSQL server (a throwaway cluster per session, tests/pg.py)."""

from __future__ import annotations

import datetime as _dt
import warnings

import pandas as pd
import pytest

from pg import Cluster, pg_cluster, pg_url  # noqa: F401  (fixtures)
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
