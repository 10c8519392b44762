"""Replay cache speed: run ``python benchmarks/spend_cache.py`` (under a minute); prints figures.

A cache hit end to end from ``client.complete`` (key, lookup in a store of 10^5 answers, the
replayed Completion, its ledger row and replay count committed) beside the baseline: the same
call sent over loopback to the bundled emulator (``cache=False``), recorded in the same ledger.
Medians over repeats, both run side by side in this process. Target: a hit <= 0.5 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEY = "pk-bench-0123456789abcdef"
ENTRIES = 10**5
REPEATS = 7
CALLS = 200


def fill(log: object, n: int) -> None:
    """n stored answers, bulk-inserted (what n earlier calls would have filed)."""
    from pienteger_nb.ledger.cache import _FILE, _answer_json, cache_of
    from pienteger_nb.types import Choice, Completion, Usage

    cache = cache_of(log)  # type: ignore[arg-type]
    answer = Completion(id="cmpl-x", model="text-davinci:003", choices=(Choice(text=" a short answer", index=0,
                        finish_reason="stop"),), usage=Usage(5, 4, 9))
    raw = _answer_json(answer)
    rows = [(f"{i:064x}", "text-davinci-003", raw, None, 5, 4, 9, None, "2026-11-30T00:00:00+00:00")
            for i in range(n)]
    with cache._conn() as conn:
        conn.execute("BEGIN")
        conn.executemany(_FILE, rows)
        conn.execute("COMMIT")


def per_call_ms(fn: object, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    folder = tempfile.mkdtemp(prefix="pienteger-bench-")
    os.environ["PIENTEGER_USAGE_DB"] = os.path.join(folder, "usage.sqlite")
    from pienteger_nb import Client
    from pienteger_nb.emulator import Emulator
    from pienteger_nb.ledger import cache_stats, default_log

    fill(default_log(), ENTRIES)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)")
    with Emulator(api_key=KEY) as emu, Client(api_key=KEY, base_url=emu.url) as client:
        ask = {"max_tokens": 16, "temperature": 0}
        client.complete("Say this is a test", **ask)  # stores the answer the hits replay
        assert client.complete("Say this is a test", **ask).cached
        print(f"store: {cache_stats().entries:,} answers")
        hits, sent = [], []
        for _ in range(REPEATS):  # interleaved, so a load spike hits both alike
            hits.append(per_call_ms(lambda: client.complete("Say this is a test", **ask), CALLS))
            sent.append(per_call_ms(lambda: client.complete("Say this is a test", cache=False, **ask), CALLS // 4))
        hit, base = statistics.median(hits), statistics.median(sent)
        print(f"cache hit, client.complete end to end:  {hit:.3f} ms  (median of {REPEATS} x {CALLS} calls)")
        print(f"baseline, sent to the emulator (loopback): {base:.3f} ms  (median of {REPEATS} x {CALLS // 4} calls)")
        print(f"hit / baseline: {hit / base:.2f}  (target: hit <= 0.5 ms: {'met' if hit <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
