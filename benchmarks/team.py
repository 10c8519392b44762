"""Team ledger (PostgreSQL) speed: ``python benchmarks/team.py [--rows N] [--procs P --calls C]``.

Starts its own throwaway cluster (tests/pg.py; fsync on, the server's defaults otherwise) over
loopback TCP and prints:

1. record(): median time to commit one row (PostgresLog) beside the SQLite ledger (UsageLog)
   run side by side. Target: <= 2 ms.
2. P processes x C calls recording at once (default 16 x 500): every row there, none twice.
3. usage() over N rows (default 10^6, bulk-loaded with COPY) beside the SQLite reader over
   the same rows. Target: <= 5 s.
4. A budget's check + reservation + settle per call (a team budget and a user budget)
   beside the SQLite ledger, interleaved. Target: <= 3 ms.
5. A replay-cache hit (lookup of the stored answer + counting the replay) beside SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pg import Cluster, find_bin_dir

from pienteger_nb.ledger.budget import LedgerSpend, make_budget
from pienteger_nb.ledger.default import replay_cache_of
from pienteger_nb.ledger.pgschema import quoted
from pienteger_nb.ledger.postgres import INSERT_SQL, PostgresLog
from pienteger_nb.ledger.schema import INSERT_COLUMNS, row_values
from pienteger_nb.ledger.store import UsageLog
from pienteger_nb.types import CallRecord, Choice, Completion, Estimate, Usage

MODELS = ["text-davinci-003", "text-curie-001", "gpt-3.5-turbo-instruct", "text-ada-001"]
SOURCES = ["magic", "client", "batch", "form"]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def sample(i: int, rng: random.Random, tag: str = "") -> CallRecord:
    stream = rng.random() < 0.5
    prompt_tokens, completion_tokens = rng.randint(3, 400), rng.randint(1, 256)
    return CallRecord(
        time=START + dt.timedelta(seconds=i * 2.5), source=rng.choice(SOURCES), model=rng.choice(MODELS),
        status="ok", http_status=200, stream=stream, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens,
        usage_source="reported", latency_s=rng.random() * 3, ttft_s=rng.random() / 5 if stream else None,
        finish_reason="stop", request_id=f"req{tag}_{i:012x}",
    )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_record(url: str, folder: Path, repeats: int) -> None:
    rng = random.Random(1)
    records = [sample(i, rng) for i in range(repeats)]
    team = PostgresLog(url, spool=folder / "spool.sqlite")
    lite = UsageLog(folder / "side.sqlite")
    team.record(records[0])  # connect and migrate outside the timing
    lite.record(records[0])
    timings: dict[str, list[float]] = {"postgres": [], "sqlite": []}
    for rec in records:  # interleaved, so both see the same machine load
        for name, log in (("postgres", team), ("sqlite", lite)):
            began = time.perf_counter()
            log.record(rec)
            timings[name].append(time.perf_counter() - began)
    pg, sq = median_ms(timings["postgres"]), median_ms(timings["sqlite"])
    p95 = sorted(timings["postgres"])[int(0.95 * len(timings["postgres"]))] * 1000
    print(f"1. record(): PostgreSQL median {pg:.3f} ms (p95 {p95:.3f} ms) vs SQLite {sq:.3f} ms "
          f"(x{pg / sq:.0f}); {repeats} rows each; target <= 2 ms: {'OK' if pg <= 2 else 'MISSED'}")
    team.close()
    # The same with each commit waiting for the server's WAL flush (an fsync per row, what the
    # server does when the URL asks for it; the default commit does not wait, like SQLite's NORMAL).
    relaxed = PostgresLog(url + "?options=-csynchronous_commit%3Don", spool=folder / "spool.sqlite")
    relaxed.record(records[0])
    quick = []
    for rec in records:
        began = time.perf_counter()
        relaxed.record(rec)
        quick.append(time.perf_counter() - began)
    print(f"   with synchronous_commit=on in the URL (fsync per row): median {median_ms(quick):.3f} ms")
    relaxed.close()
    lite.close()


def _worker(url: str, spool: str, proc: int, calls: int) -> None:
    rng = random.Random(proc)
    log = PostgresLog(url, spool=spool)
    for i in range(calls):
        log.record(sample(i, rng, tag=f"p{proc}"))
    log.close()


def bench_processes(url: str, folder: Path, procs: int, calls: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    context = multiprocessing.get_context("spawn")
    began = time.perf_counter()
    workers = [
        context.Process(target=_worker, args=(url, str(folder / f"spool{p}.sqlite"), p, calls)) for p in range(procs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    elapsed = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM calls WHERE request_id LIKE 'reqp%%'"
        ).fetchone()
    expected = procs * calls
    print(f"2. {procs} processes x {calls} calls at once: {total} rows, {distinct} distinct, expected "
          f"{expected}: {'OK' if total == distinct == expected else 'MISSED'} ({elapsed:.1f} s with process "
          f"start-up; rows table had {before} before)")


def bench_usage(url: str, folder: Path, rows: int) -> None:
    import psycopg

    rng = random.Random(2)
    values = [row_values(sample(i, rng), store_prompts=False) for i in range(rows)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE calls")
        # A bulk load for a reading benchmark: the spend trigger (totals per period) is not what is measured.
        conn.execute("ALTER TABLE calls DISABLE TRIGGER calls_spend")
        with conn.cursor() as cur, cur.copy(f"COPY calls (row_uid, {', '.join(map(quoted, INSERT_COLUMNS))}) FROM STDIN") as copy:
            for row in values:
                copy.write_row((uuid.uuid4().hex, *row))
        conn.execute("ALTER TABLE calls ENABLE TRIGGER calls_spend")
        conn.execute("VACUUM ANALYZE calls")
    assert INSERT_SQL  # the same columns the recorder writes
    lite = UsageLog(folder / "big.sqlite")
    lite._write(values)
    team = PostgresLog(url, spool=folder / "spool.sqlite")
    timings: dict[str, list[float]] = {"postgres": [], "sqlite": []}
    for _ in range(3):
        for name, log in (("postgres", team), ("sqlite", lite)):
            began = time.perf_counter()
            frame = log.frame()
            timings[name].append(time.perf_counter() - began)
            assert len(frame) == rows
    pg, sq = statistics.median(timings["postgres"]), statistics.median(timings["sqlite"])
    print(f"3. usage() over {rows:,} rows: PostgreSQL median {pg:.2f} s vs SQLite {sq:.2f} s (x{pg / sq:.1f}); "
          f"3 repeats; target <= 5 s: {'OK' if pg <= 5 else 'MISSED'}")
    team.close()
    lite.close()


def _interleaved(work: dict[str, object], repeats: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for name, step in work.items():
            began = time.perf_counter()
            step()  # type: ignore[operator]
            timings[name].append(time.perf_counter() - began)
    return timings


def bench_budget(url: str, folder: Path, repeats: int) -> None:
    team = PostgresLog(url, spool=folder / "spool.sqlite")
    lite = UsageLog(folder / "budget.sqlite")
    estimate = Estimate(1, 12, 40, 0.0016, "text-davinci-003")
    for scope in ("team", "user"):
        def budget(scope: str = scope) -> object:
            return make_budget(10**9, tokens=10**12, per="day", scope=scope)

        policies = {"postgres": LedgerSpend(team, budget=budget), "sqlite": LedgerSpend(lite, budget=budget)}  # type: ignore[arg-type]
        for policy in policies.values():
            policy.settle(policy.reserve(estimate), None)  # connect outside the timing

        def step(policy: LedgerSpend) -> None:
            policy.settle(policy.reserve(estimate), None)

        timings = _interleaved({name: (lambda p=p: step(p)) for name, p in policies.items()}, repeats)
        pg, sq = median_ms(timings["postgres"]), median_ms(timings["sqlite"])
        print(f"4. budget check + reservation + settle ({scope} scope): PostgreSQL median {pg:.3f} ms vs "
              f"SQLite {sq:.3f} ms (x{pg / sq:.1f}); {repeats} calls each; target <= 3 ms: "
              f"{'OK' if pg <= 3 else 'MISSED'}")
    team.close()
    lite.close()


def bench_cache(url: str, folder: Path, repeats: int) -> None:
    team = PostgresLog(url, spool=folder / "spool.sqlite")
    lite = UsageLog(folder / "cache.sqlite")
    answer = Completion(id="cmpl-1", model="text-davinci-003", created=0, request_id="req-1",
                        usage=Usage(prompt_tokens=5, completion_tokens=7, total_tokens=12, source="reported"),
                        choices=(Choice(text="This is a test.", index=0, finish_reason="stop"),),
                        requested_model="text-davinci-003")
    stored = CallRecord(time=START, source="client", model="text-davinci-003", status="ok", cache_key="k" * 64,
                        answer=answer, prompt_tokens=5, completion_tokens=7, total_tokens=12)
    replay = CallRecord(time=START, source="client", model="text-davinci-003", status="ok", cache_key="k" * 64,
                        cached=True)
    caches = {"postgres": replay_cache_of(team), "sqlite": replay_cache_of(lite)}
    for cache in caches.values():
        cache.file(stored, store_prompts=False)

    def hit(cache: object) -> None:
        assert cache.lookup("k" * 64) is not None  # type: ignore[attr-defined]
        cache.file(replay, store_prompts=False)  # type: ignore[attr-defined]

    timings = _interleaved({name: (lambda c=c: hit(c)) for name, c in caches.items()}, repeats)
    pg, sq = median_ms(timings["postgres"]), median_ms(timings["sqlite"])
    print(f"5. replay-cache hit (lookup + replay counted): PostgreSQL median {pg:.3f} ms vs SQLite "
          f"{sq:.3f} ms (x{pg / sq:.1f}); {repeats} hits each")
    team.close()
    lite.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--procs", type=int, default=16)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--only", choices=["record", "processes", "usage", "budget", "cache"], action="append",
                        help="run only these parts (repeatable; default: all)")
    args = parser.parse_args()
    parts = set(args.only or ["record", "processes", "usage", "budget", "cache"])
    if find_bin_dir() is None:
        sys.exit("PostgreSQL binaries not found: apt-get install -y postgresql")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    cluster = Cluster(find_bin_dir(), fsync=True)  # type: ignore[arg-type]
    cluster.start()
    try:
        url = cluster.create_database("bench")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            with PostgresLog(url, spool=folder / "spool.sqlite") as ledger:
                ledger.open()  # migrate once, whichever parts run
            if "record" in parts:
                bench_record(url, folder, args.repeats)
            if "processes" in parts:
                bench_processes(url, folder, args.procs, args.calls)
            if "usage" in parts:
                bench_usage(url, folder, args.rows)
            if "budget" in parts:
                bench_budget(url, folder, args.repeats)
            if "cache" in parts:
                bench_cache(url, folder, args.repeats)
    finally:
        cluster.destroy()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
