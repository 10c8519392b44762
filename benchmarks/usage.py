"""Usage ledger speed: run ``python benchmarks/usage.py`` (about a minute); prints figures.

``--quick`` runs sections 1 and 4 only (seconds, no 10^6-row ledger).

1. record(): median time to write one row with its commit, WAL + synchronous=NORMAL (what
   UsageLog uses) beside synchronous=FULL (an fsync per row, the contract's baseline).
2. 8 threads x 500 rows: one shared connection behind a lock (what UsageLog does) against a
   connection per thread.
3. A ledger of 10^6 rows (bulk-inserted with executemany): file size, the DataFrame build
   (UsageLog.frame) beside the obvious cursor.fetchall() + DataFrame and pd.read_sql, and the
   summaries (usage_summary reads only the columns it needs).
4. Opening: UsageLog() on a ledger already at the current schema, and on a path with no file
   (created and migrated); then 16 processes opening one fresh file at the same instant
   (a barrier releases them): wall time until all have opened, and how many failed.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pienteger_nb.ledger.schema import INSERT_SQL, LABEL_AT, LABEL_SQL, LABELLED, row_values
from pienteger_nb.ledger.store import UsageLog
from pienteger_nb.types import CallRecord

ROWS = 10**6
MODELS = ["text-davinci-003", "text-curie-001", "gpt-3.5-turbo-instruct", "text-ada-001"]
SOURCES = ["magic", "client", "batch", "form"]


def sample_record(i: int, rng: random.Random, start: dt.datetime) -> CallRecord:
    kind = rng.random()
    when = start + dt.timedelta(seconds=i * 2.5)
    model, source = rng.choice(MODELS), rng.choice(SOURCES)
    if kind < 0.04:
        return CallRecord(time=when, source=source, model=model, status="error", http_status=429,
                          error="RateLimitError: rate limit reached, retry after 2s", latency_s=rng.random() / 50,
                          attempts=3, request_id=f"req_{i:012x}")
    stream = kind < 0.5
    prompt_tokens, completion_tokens = rng.randint(3, 400), rng.randint(1, 256)
    return CallRecord(
        time=when, source=source, model=model, status="cancelled" if kind < 0.05 else "ok", http_status=200,
        stream=stream, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens, usage_source="estimated" if kind < 0.06 else "reported",
        latency_s=rng.random() * 3, ttft_s=rng.random() / 5 if stream else None,
        finish_reason=rng.choice(["stop", "length"]), attempts=1, request_id=f"req_{i:012x}",
        execution_count=i % 500 if source == "magic" else None,
    )


def bench_record(folder: Path) -> None:
    rng = random.Random(1)
    start = dt.datetime.now(dt.UTC)
    records = [sample_record(i, rng, start) for i in range(2000)]
    medians = {}
    for sync in ("NORMAL", "FULL"):
        log = UsageLog(folder / f"record_{sync}.sqlite", store_prompts=False)
        assert log._conn is not None
        log._conn.execute(f"PRAGMA synchronous = {sync}")
        count = 2000 if sync == "NORMAL" else 300
        for rec in records[:50]:  # warm up
            log.record(rec)
        times = []
        for rec in records[:count]:
            t0 = time.perf_counter()
            log.record(rec)
            times.append(time.perf_counter() - t0)
        medians[sync] = statistics.median(times)
        log.close()
    print(f"record() one row + commit, WAL synchronous=NORMAL: median {medians['NORMAL'] * 1e6:8.1f} us  (target <= 1000 us)")
    print(f"record() one row + commit, WAL synchronous=FULL:   median {medians['FULL'] * 1e6:8.1f} us  "
          f"(baseline; {medians['FULL'] / medians['NORMAL']:.0f}x NORMAL)")


def bench_threads(folder: Path) -> None:
    rng = random.Random(2)
    start = dt.datetime.now(dt.UTC)
    rows = [row_values(sample_record(i, rng, start), store_prompts=False) for i in range(500)]

    def run(target, label: str) -> None:
        threads = [threading.Thread(target=target) for _ in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.perf_counter() - t0
        print(f"8 threads x 500 rows, {label}: {elapsed * 1e3:7.1f} ms  ({elapsed / 4000 * 1e6:.1f} us per row)")

    log = UsageLog(folder / "threads_shared.sqlite")
    recs = [sample_record(i, rng, start) for i in range(500)]
    run(lambda: [log.record(r) for r in recs], "one connection + lock (UsageLog)")
    assert len(log) == 4000
    log.close()

    path = folder / "threads_own.sqlite"
    UsageLog(path).close()

    def own() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous = NORMAL")
        for row in rows:
            conn.execute(INSERT_SQL, row)
        conn.close()

    run(own, "a connection per thread")


def build_big(path: Path) -> UsageLog:
    """A ledger of ROWS rows: 1,000 sample rows repeated with their own times and request ids."""
    rng = random.Random(3)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ROWS * 2.5)
    samples = [row_values(sample_record(i, rng, start), store_prompts=False) for i in range(1000)]
    first_us = samples[0][0]

    def rows():
        for i in range(ROWS):
            row = samples[i % 1000]
            yield (first_us + i * 2_500_000, *row[1:15], f"req_{i:012x}", *row[16:])

    log = UsageLog(path, store_prompts=False)
    conn = sqlite3.connect(path, isolation_level=None)
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    # What record() does for new values: the category labels go in with the rows.
    conn.executemany(LABEL_SQL, {(n, r[at]) for r in samples for n, at in zip(LABELLED, LABEL_AT) if r[at]})
    conn.executemany(INSERT_SQL, rows())
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"bulk insert of {ROWS:,} rows (executemany, one transaction): {time.perf_counter() - t0:.1f} s")
    return log


def timed(fn, repeat: int = 3) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds of this process (threads included), last result.

    On a shared machine the wall time includes waiting for a core; CPU time shows the work.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def bench_big(folder: Path) -> None:
    import pandas as pd

    path = folder / "big.sqlite"
    log = build_big(path)
    size = path.stat().st_size
    print(f"file size: {size / 1e6:.1f} MB per {ROWS:,} rows ({size / ROWS:.0f} bytes per row)")

    seconds, cpu, frame = timed(log.frame)
    assert len(frame) == ROWS
    print(f"UsageLog.frame() over {ROWS:,} rows: median {seconds:.2f} s wall, {cpu:.2f} s CPU  (target <= 3 s)")

    def fetchall_frame() -> pd.DataFrame:
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT time_us, source, model, status, error, http_status, stream, prompt_tokens, completion_tokens, "
            "total_tokens, usage_source, latency_s, ttft_s, finish_reason, attempts, request_id, endpoint, "
            "execution_count FROM calls ORDER BY id"
        ).fetchall()
        conn.close()
        return pd.DataFrame.from_records(rows)

    seconds_fetch, cpu_fetch, _ = timed(fetchall_frame, repeat=1)
    print(f"  baseline: cursor.fetchall() + DataFrame.from_records, no dtypes yet: {seconds_fetch:.2f} s wall, "
          f"{cpu_fetch:.2f} s CPU ({cpu_fetch / cpu:.1f}x the CPU)")

    def read_sql() -> pd.DataFrame:
        conn = sqlite3.connect(path)
        df = pd.read_sql("SELECT * FROM calls", conn)
        conn.close()
        return df

    seconds_sql, cpu_sql, _ = timed(read_sql, repeat=1)
    print(f"  baseline: pd.read_sql, no dtypes yet: {seconds_sql:.2f} s wall, {cpu_sql:.2f} s CPU "
          f"({cpu_sql / cpu:.1f}x the CPU)")

    for by in ("model", "day", "source"):
        seconds, cpu, summary = timed(lambda by=by: log.summary(by))
        print(f"usage summary by {by:6} from the file ({len(summary)} rows): median {seconds:.2f} s wall, "
              f"{cpu:.2f} s CPU  (target <= 1 s)")
    prices = {"text-davinci-003": 0.02, "text-curie-001": {"prompt": 0.002, "completion": 0.002}}
    seconds, cpu, _ = timed(lambda: log.summary("model", prices=prices))
    print(f"usage summary by model with prices: median {seconds:.2f} s wall, {cpu:.2f} s CPU")
    from pienteger_nb.ledger.views import summarize

    seconds, cpu, _ = timed(lambda: summarize(frame, by="model"))
    print(f"  of which summarising an already built frame: median {seconds:.2f} s")
    seconds, cpu, part = timed(lambda: log.frame("1d"))
    print(f"UsageLog.frame(since='1d') ({len(part):,} rows, uses the time index): median {seconds * 1e3:.1f} ms")
    log.close()


def bench_open(folder: Path) -> None:
    existing = folder / "open_existing.sqlite"
    UsageLog(existing).close()
    for label, path_of in (
        ("an existing ledger", lambda i: existing),
        ("a new file (created + migrated)", lambda i: folder / f"open_new_{i}.sqlite"),
    ):
        times = []
        for i in range(300):
            path = path_of(i)
            t0 = time.perf_counter()
            UsageLog(path).close()
            times.append(time.perf_counter() - t0)
        print(f"UsageLog() opening {label}: median {statistics.median(times) * 1e6:8.1f} us over {len(times)}")

    ctx = multiprocessing.get_context("fork")
    walls, failures = [], 0
    for round_ in range(10):
        path = folder / f"open_16_{round_}.sqlite"
        barrier, results = ctx.Barrier(17), ctx.Queue()
        procs = [ctx.Process(target=_open_at_barrier, args=(path, barrier, results)) for _ in range(16)]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=60)  # the clock starts when all 16 are released at once
        t0 = time.perf_counter()
        outcomes = [results.get(timeout=120) for _ in procs]
        walls.append(time.perf_counter() - t0)
        for proc in procs:
            proc.join(timeout=30)
        failures += sum(1 for outcome in outcomes if outcome)
    print(f"16 processes opening one fresh ledger at once: median {statistics.median(walls) * 1e3:.1f} ms until all "
          f"have opened (10 rounds), {failures} of 160 opens failed")


def _open_at_barrier(path: Path, barrier: object, results: object) -> None:
    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    try:
        UsageLog(path).close()
        results.put("")  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - counted and shown by the parent
        results.put(str(exc) or type(exc).__name__)  # type: ignore[attr-defined]


def main() -> None:
    t0 = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="pienteger-usage-bench-") as tmp:
        folder = Path(tmp)
        bench_record(folder)
        bench_open(folder)
        if "--quick" not in sys.argv:
            bench_threads(folder)
            bench_big(folder)
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
