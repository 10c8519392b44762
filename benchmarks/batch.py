"""Batch benchmarks: throughput against latency, pacing against an rpm limit, memory per 10,000 rows.

Run as ``python benchmarks/batch.py`` (about 2 minutes). The emulator runs in a child process so
the batch's threads do not share a GIL with the server: the client is what is measured. Figures:

1. 1,000 prompts, 50 ms emulator latency, concurrency 16: wall time against the ideal
   1000 * 0.05 / 16 s (target <= 1.25x), median of 3 runs.
2. An emulator limit of 600 requests/minute: achieved rate and share of requests answered 429,
   counted by the emulator. (a) the limit is known (``rpm=600``), 300 prompts; (b) it is learned
   from the x-ratelimit-remaining-* headers and 429s, 660 prompts over one 60 s window.
3. Memory: tracemalloc peak during a 10,000-row run against a 0-latency emulator, and the size
   of the resulting DataFrame.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from typing import Any

KEY = "pk-bench-0123456789abcdef"


def _serve(conn: Any) -> None:
    """Child process: an emulator, driven by (command, argument) messages on ``conn``."""
    from pienteger_nb.emulator import Emulator
    from pienteger_nb.emulator.records import RateWindow

    statuses: collections.Counter[int] = collections.Counter()

    def log(line: str) -> None:
        _method, path, status = line.split()[:3]
        if path.endswith("/completions"):
            statuses[int(status)] += 1

    emu = Emulator(api_key=KEY, log=log).start()
    conn.send(emu.url)
    while True:
        cmd, arg = conn.recv()
        if cmd == "set":
            for name, value in arg.items():
                if name == "nominal_tpm":
                    RateWindow.NOMINAL_TPM = value
                else:
                    setattr(emu, name, value)
        elif cmd == "reset":
            emu.reset()
            statuses.clear()
        elif cmd == "stats":
            conn.send(dict(statuses))
            continue
        elif cmd == "stop":
            emu.stop()
            conn.send(None)
            return
        conn.send(None)


class Server:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()

    def call(self, cmd: str, arg: Any = None) -> Any:
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def close(self) -> None:
        self.call("stop")
        self._proc.join(10)


def prompts(n: int, tag: str) -> list[str]:
    return [f"{tag} prompt number {i}: tell me something." for i in range(n)]


def throughput(server: Server, client: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pienteger_nb.batch.run import complete_many

    n, latency, concurrency = 1000, 0.05, 16
    ideal = n * latency / concurrency
    server.call("set", {"latency": latency, "rpm": None})
    quiet = client.with_options(on_call=False)

    def one(prompt: str) -> None:  # what a batch row does, without the batch around it
        with quiet.stream(prompt, max_tokens=16) as s:
            for _ in s:
                pass

    times, raw = [], []
    for run in range(3):
        server.call("reset")
        start = time.perf_counter()
        df = complete_many(
            prompts(n, f"t{run}"), client=client, concurrency=concurrency, progress=False, max_tokens=16
        )
        times.append(time.perf_counter() - start)
        assert (df["status"] == "ok").all(), df["error"].value_counts()
        server.call("reset")
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, prompts(n, f"r{run}")))
        raw.append(time.perf_counter() - start)
    wall, base = statistics.median(times), statistics.median(raw)
    print(
        f"throughput: {n} prompts, latency {latency * 1000:.0f} ms, concurrency {concurrency}: "
        f"median wall {wall:.2f} s (runs {', '.join(f'{t:.2f}' for t in times)}), "
        f"ideal {ideal:.3f} s, ratio {wall / ideal:.2f}x (target <= 1.25x); {n / wall:.0f} rows/s. "
        f"Same client streams from a plain ThreadPoolExecutor: median {base:.2f} s "
        f"({base / ideal:.2f}x): the batch itself adds {wall / base - 1:+.0%}"
    )


def pacing(server: Server, client: Any, *, n: int, known: bool) -> None:
    from pienteger_nb.batch.pacing import RateLimiter
    from pienteger_nb.batch.run import complete_many

    limit, concurrency = 600, 16
    server.call("set", {"latency": 0.05, "rpm": limit})
    server.call("reset")
    limiter = RateLimiter(rpm=limit if known else None, concurrency=concurrency)
    start = time.perf_counter()
    df = complete_many(
        prompts(n, "p"), client=client, concurrency=concurrency, progress=False, max_tokens=8, limiter=limiter
    )
    wall = time.perf_counter() - start
    stats = server.call("stats")
    received = sum(stats.values())
    limited = stats.get(429, 0)
    rate = n / wall * 60
    how = "known (rpm=600)" if known else "learned from headers and 429s"
    print(
        f"pacing, limit {limit}/min {how}: {n} rows in {wall:.1f} s -> {rate:.0f} rows/min "
        f"= {rate / limit:.0%} of the limit; emulator received {received}, answered 429 to "
        f"{limited} ({limited / max(received, 1):.1%}); rows ok {int((df['status'] == 'ok').sum())}/{n}"
    )


def memory(server: Server, client: Any) -> None:
    from pienteger_nb.batch.run import complete_many

    n = 10_000
    # Headers count down from the emulator's nominal limits when it has none; lift them so the
    # header-driven slow-down (right for a real service) does not turn this into a pacing test.
    server.call("set", {"latency": 0.0, "rpm": 10**9, "nominal_tpm": 10**12})
    server.call("reset")
    items = prompts(n, "m")
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    start = time.perf_counter()
    df = complete_many(items, client=client, concurrency=16, progress=False, max_tokens=16)
    wall = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (df["status"] == "ok").all()
    frame = int(df.memory_usage(deep=True).sum())
    print(
        f"memory: {n} rows (0 ms latency, concurrency 16, {wall:.1f} s under tracemalloc): "
        f"peak traced during the run {(peak - base) / 2**20:.1f} MiB; result frame "
        f"{frame / 2**20:.1f} MiB ({frame / n:.0f} bytes/row, deep)"
    )


def main() -> None:
    os.environ.setdefault("PIENTEGER_USAGE_DB", os.path.join(tempfile.mkdtemp(), "usage.sqlite"))
    import pienteger_nb  # noqa: F401  (wires the default recorder to the ledger, as users get it)
    from pienteger_nb import Client

    server = Server()
    try:
        client = Client(api_key=KEY, base_url=server.url)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {load} "
            "(other work on the machine slows the figures below)"
        )
        throughput(server, client)
        pacing(server, client, n=300, known=True)
        pacing(server, client, n=660, known=False)
        memory(server, client)
    finally:
        server.close()


if __name__ == "__main__":
    main()
