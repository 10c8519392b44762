"""Spend control speed: run ``python benchmarks/spend.py`` (about a minute); prints figures.

1. Budget check + reservation + settlement on a ledger of 10^6 rows (targets <= 0.3 ms a call):
   ``LedgerSpend.reserve`` (one BEGIN IMMEDIATE: drop expired reservations, read the period's
   running total and the reservations held, insert one) and ``settle`` (delete it), beside the
   obvious way, summing today's ``cost`` from ``calls`` through the time index at each check.
   Also what the running-totals trigger adds to ``record()``.
2. ``Client.estimate`` (target <= 0.2 ms): the request checked as a call would be, the
   characters-per-token ratio (cached a few seconds per model) and the price.

Medians over repeats. The machine is shared with other jobs: read the ratios more than the
absolute figures.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pienteger_nb.client import Client
from pienteger_nb.ledger.budget import LedgerSpend, make_budget
from pienteger_nb.ledger.prices import set_prices
from pienteger_nb.ledger.store import UsageLog
from pienteger_nb.types import CallRecord, Estimate

ROWS = 10**6
MODELS = ["text-davinci-003", "text-curie-001", "gpt-3.5-turbo-instruct", "text-ada-001"]


def median_us(fn: Callable[[], object], *, repeats: int = 7, inner: int = 300) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(samples)


def build(path: Path) -> UsageLog:
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(seconds=ROWS * 2.5)
    log = UsageLog(path)
    chunk = 50_000
    for base in range(0, ROWS, chunk):
        records = []
        for i in range(base, base + chunk):
            p, c = rng.randint(3, 400), rng.randint(1, 256)
            records.append(CallRecord(
                time=start + dt.timedelta(seconds=i * 2.5), source="batch", model=rng.choice(MODELS),
                status="ok", prompt_tokens=p, completion_tokens=c, total_tokens=p + c,
                usage_source="reported", prompt="x" * (p * 4),
            ))
        log.record_many(records)
    return log


def main() -> None:
    set_prices({m: {"prompt": 0.01, "completion": 0.03} for m in MODELS})
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        log = build(Path(folder) / "usage.sqlite")
        print(f"ledger of {len(log):,} rows built in {time.perf_counter() - started:.1f} s "
              f"({os.path.getsize(log.path) / 1e6:.0f} MB)")

        budget = make_budget(1e9, tokens=10**12, per="day")
        policy = LedgerSpend(log, budget=lambda: budget)
        worst = Estimate(1, 50, 256, 0.0082, MODELS[0])

        def reserve_and_settle() -> None:
            policy.settle(policy.reserve(worst), None)

        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        today_us = int(today.timestamp() * 1e6)

        def scan_today() -> None:  # the obvious check: sum today's rows at every call
            log.execute("SELECT ifnull(sum(cost), 0), ifnull(sum(total_tokens), 0) FROM calls WHERE time_us >= ?",
                        (today_us,))

        reserve_us = median_us(reserve_and_settle)
        scan_us = median_us(scan_today, inner=20)
        print("\n1. budget check + reservation + settlement, 10^6-row ledger (median per call)")
        print(f"   reserve + settle (running totals)     {reserve_us:8.1f} us   target <= 300 us")
        print(f"   baseline: sum today's rows per check  {scan_us:8.1f} us   ({scan_us / reserve_us:.1f}x slower; "
              f"{ROWS * 2.5 / 86400:.0f} days of rows, today's only)")

        rec = CallRecord(time=dt.datetime.now(dt.UTC), source="client", model=MODELS[0], status="ok",
                         prompt_tokens=20, completion_tokens=30, total_tokens=50, usage_source="reported",
                         prompt="p" * 80)
        with_trigger = median_us(lambda: log.record(rec), inner=200)
        trigger_sql = log.execute("SELECT sql FROM sqlite_master WHERE name = 'calls_spend'")[0][0]
        log.execute("DROP TRIGGER calls_spend")
        without_trigger = median_us(lambda: log.record(rec), inner=200)
        log.execute(trigger_sql)
        print(f"   record() with the totals trigger      {with_trigger:8.1f} us   without: {without_trigger:.1f} us "
              f"(+{with_trigger - without_trigger:.1f} us)")
        print(f"   => added per call: {reserve_us + with_trigger - without_trigger:.1f} us")

        client = Client(api_key="pk-bench-0123456789abcdef", base_url="http://127.0.0.1:9/oaiv1",
                        spend=LedgerSpend(log))
        prompt = "Summarise this review in one sentence: the battery lasts two days and the screen is sharp."
        client.estimate(prompt, max_tokens=64)  # the ratio is read once, then cached
        estimate_us = median_us(lambda: client.estimate(prompt, max_tokens=64, temperature=0), inner=2000)
        preview_us = median_us(lambda: client.request_preview(prompt, max_tokens=64, temperature=0), inner=2000)
        print("\n2. Client.estimate (median per call)")
        print(f"   estimate                              {estimate_us:8.1f} us   target <= 200 us")
        print(f"   baseline: request_preview (checks)    {preview_us:8.1f} us")
        log.close()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
