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

``python benchmarks/batch.py limiter`` (about 10 minutes; ``--quick`` for about 2) measures the
limiter at scale instead: 5,000 prompts, 500 in flight, 1 s latency, each run against a fresh
``pienteger-nb serve`` process, the limiter under test beside a baseline limiter (by default the
one before reservations, read from git) in alternating runs. Client CPU is ``time.process_time()``
of this process over the batch (the server is another process), per request.

4. Paced: the server advertises its nominal 3,500 requests/minute (``--rpm`` to advertise and
   enforce another), the limiter learns the pace from x-ratelimit-remaining-* (target: CPU
   <= 1.5 ms/request, wall time as the baseline's), beside the same batch with the headers
   ignored (nothing paces it).
5. A limit that never binds: the limiter is told ``rpm`` = twice what the in-flight requests can
   reach and the server advertises far more; wall time against the ideal
   prompts / in-flight * latency (target <= 1.2x), beside a limiter with no limit at all.
"""

from __future__ import annotations

import argparse
import collections
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, Self

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


# The limiter before reservations (every waiter woke at each grant): the default baseline.
BASELINE = "b848fbe:pienteger_nb/pacing.py"


def baseline_limiter(spec: str) -> Any:
    """``RateLimiter`` from ``REV:PATH`` in git, run against today's package."""
    import subprocess
    import types

    from pienteger_nb.batch import pacing

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", spec], cwd=root, capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("baseline_pacing")
    exec(compile(source, spec, "exec"), module.__dict__)  # noqa: S102  (our own history)
    module.Cancelled = pacing.Cancelled  # so the batch treats its cancellations as today's
    return module.RateLimiter


class Serve:
    """``pienteger-nb serve`` in a child process on a free port, stopped on exit."""

    def __init__(self, *, latency: float, rpm: int | None, in_flight: int) -> None:
        import subprocess

        # A request holds one of the emulator's threads for its whole latency: give it one per
        # request in flight (its default, 128, would cap the batch at 128 requests a second).
        cmd = [sys.executable, "-m", "pienteger_nb.cli", "serve", "--port", "0", "--quiet",
               "--api-key", KEY, "--latency", str(latency), "--max-threads", str(in_flight + 16)]
        if rpm is not None:
            cmd += ["--rpm", str(rpm)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "serving at" in line:
                self.url = line.split()[-1]
                break
        else:
            raise RuntimeError(f"pienteger-nb serve did not start (exit {self.proc.wait()})")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def limiter_run(make: Callable[[list[Any]], Any], *, n: int, concurrency: int, latency: float,
                serve_rpm: int | None, max_tokens: int, tag: str) -> dict[str, float]:
    """One batch against a fresh server: wall s, client CPU s, rows not ok, attempts, limiter
    waits, and the pace of the last fifth of the starts (per minute)."""
    import gc

    from pienteger_nb import Client
    from pienteger_nb.batch import complete_many

    with Serve(latency=latency, rpm=serve_rpm, in_flight=concurrency) as server:
        client = Client(api_key=KEY, base_url=server.url)
        trace: list[Any] = []
        limiter = make(trace)
        gc.collect()
        cpu, start = time.process_time(), time.perf_counter()
        df = complete_many(prompts(n, tag), client=client, concurrency=concurrency, progress=False,
                           max_tokens=max_tokens, limiter=limiter)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "bad": int((df["status"] != "ok").sum()),
            "attempts": int(df["attempts"].sum()), "waits": float(getattr(limiter, "waits", "nan")),
            "pace": _pace([e[1] for e in trace if e[0] == "grant"])}


def _pace(starts: list[float]) -> float:
    """Starts per minute over the last fifth of ``starts``: the pace the limiter settled at."""
    starts = sorted(starts)[-max(len(starts) // 5, 2):]
    return (len(starts) - 1) / max(starts[-1] - starts[0], 1e-9) * 60


def limiter_scenario(title: str, variants: dict[str, Callable[[list[Any]], Any]], *, runs: int, n: int,
                     ideal: float | None, **kw: Any) -> dict[str, dict[str, float]]:
    """Runs every variant ``runs`` times, alternating; prints and returns the medians."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for r in range(runs):
        for name, make in variants.items():
            results[name].append(limiter_run(make, n=n, tag=f"{title[:1]}{r}{name}", **kw))
    print(f"{title} (load average now {os.getloadavg()[0]:.1f})")
    medians: dict[str, dict[str, float]] = {}
    width = max(map(len, variants))
    for name, rs in results.items():
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        medians[name] = med
        cpus = ", ".join(f"{x['cpu'] / n * 1000:.2f}" for x in rs)
        walls = ", ".join(f"{x['wall']:.1f}" for x in rs)
        vs_ideal = f" = {med['wall'] / ideal:.2f}x ideal {ideal:.1f} s" if ideal else ""
        waits = "" if math.isnan(med["waits"]) else f"; {med['waits'] / n:.2f} waits/request"
        print(f"  {name:<{width}}  CPU {med['cpu'] / n * 1000:.2f} ms/request ({cpus}); wall "
              f"{med['wall']:.1f} s ({walls}){vs_ideal}; rows not ok {med['bad']:.0f}, "
              f"retries {med['attempts'] - n:.0f}; last fifth of the starts at {med['pace']:.0f}/min{waits}")
    return medians


def limiter_bench(args: argparse.Namespace) -> None:
    old = baseline_limiter(args.baseline)
    n, conc, latency = args.prompts, args.concurrency, args.latency
    kw: dict[str, Any] = {"runs": args.runs, "n": n, "concurrency": conc, "latency": latency}
    print(f"limiter: {n} prompts, {conc} in flight, latency {latency:g} s, {args.runs} runs alternating; "
          f"baseline {args.baseline}; median (runs)")
    if args.scenario in ("both", "paced"):
        limiter_paced(args, old, args.rpm or 3500, kw)
    if args.scenario in ("both", "loose"):
        limiter_loose(args, old, kw)


def limiter_paced(args: argparse.Namespace, old: Any, advertised: int, kw: dict[str, Any]) -> None:
    from pienteger_nb.batch.pacing import RateLimiter

    class Deaf(RateLimiter):
        """Hears 429s but not the remaining-* headers: the same batch with nothing pacing it."""

        def observe(self, status_code: int | None, retry_after: float | None, ratelimit: Any) -> None:
            super().observe(status_code, retry_after, {})

    conc = args.concurrency
    paced = limiter_scenario(
        f"4. paced: the server advertises {advertised} requests/min"
        f"{' (enforced)' if args.rpm else ' (nominal)'}, learned from its headers",
        {"unpaced": lambda trace: Deaf(concurrency=conc, trace=trace),
         "baseline": lambda trace: old(concurrency=conc, trace=trace),
         "new": lambda trace: RateLimiter(concurrency=conc, trace=trace)},
        ideal=None, serve_rpm=args.rpm, max_tokens=16, **kw,
    )
    b, c, u = paced["baseline"], paced["new"], paced["unpaced"]
    print(f"  new / baseline: CPU {c['cpu'] / b['cpu']:.2f}x, wall {c['wall'] / b['wall']:.2f}x; new / unpaced: "
          f"CPU {c['cpu'] / u['cpu']:.2f}x (targets: CPU <= 1.5 ms/request, wall unchanged; "
          f"advertised pace {advertised}/min)")


def limiter_loose(args: argparse.Namespace, old: Any, kw: dict[str, Any]) -> None:
    from pienteger_nb.batch.pacing import RateLimiter

    n, conc, latency = args.prompts, args.concurrency, args.latency
    loose = round(2 * conc / latency * 60)
    ideal = n / conc * latency
    # The server advertises far more than any run reaches, and max_tokens=4 keeps the token count
    # far from its nominal 90,000 a minute: no header ever asks to slow down.
    unbound = limiter_scenario(
        f"5. a limit that never binds: rpm={loose} known to the limiter (2x what {conc} in flight reach)",
        {"no limit": lambda trace: RateLimiter(concurrency=conc, trace=trace),
         "baseline": lambda trace: old(rpm=loose, concurrency=conc, trace=trace),
         "new": lambda trace: RateLimiter(rpm=loose, concurrency=conc, trace=trace)},
        ideal=ideal, serve_rpm=10**9, max_tokens=4, **kw,
    )
    b, c, u = unbound["baseline"], unbound["new"], unbound["no limit"]
    print(f"  new / baseline: CPU {c['cpu'] / b['cpu']:.2f}x, wall {c['wall'] / b['wall']:.2f}x; new / no limit: "
          f"CPU {c['cpu'] / u['cpu']:.2f}x, wall {c['wall'] / u['wall']:.2f}x (target: wall <= 1.2x ideal)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["all", "limiter"], default="all",
                        help="all: figures 1-3; limiter: figures 4-5, the limiter at scale")
    parser.add_argument("--quick", action="store_true",
                        help="limiter: 2,000 prompts, 250 in flight, an enforced 2,000/min, one run")
    parser.add_argument("--prompts", type=int, default=None, help="limiter: prompts per batch (5000)")
    parser.add_argument("--concurrency", type=int, default=None, help="limiter: requests in flight (500)")
    parser.add_argument("--latency", type=float, default=1.0, help="limiter: server latency, s (1)")
    parser.add_argument("--runs", type=int, default=None, help="limiter: runs per variant (3)")
    parser.add_argument("--rpm", type=int, default=None,
                        help="limiter: the paced server enforces and advertises this (default: nominal)")
    parser.add_argument("--scenario", choices=["both", "paced", "loose"], default="both",
                        help="limiter: run figure 4 (paced), 5 (loose) or both")
    parser.add_argument("--baseline", default=BASELINE, help=f"limiter: REV:PATH of pacing.py ({BASELINE})")
    args = parser.parse_args()
    quick = args.quick
    args.prompts = args.prompts or (2000 if quick else 5000)
    args.concurrency = args.concurrency or (250 if quick else 500)
    args.runs = args.runs or (1 if quick else 3)
    if quick and args.rpm is None:
        args.rpm = 2000  # the nominal 3,500 would never run low in 2,000 requests
    os.environ.setdefault("PIENTEGER_USAGE_DB", os.path.join(tempfile.mkdtemp(), "usage.sqlite"))
    import pienteger_nb  # noqa: F401  (wires the default recorder to the ledger, as users get it)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {load} "
        "(other work on the machine slows the figures below)"
    )
    if args.what == "limiter":
        limiter_bench(args)
        return
    from pienteger_nb import Client

    server = Server()
    try:
        client = Client(api_key=KEY, base_url=server.url)
        throughput(server, client)
        pacing(server, client, n=300, known=True)
        pacing(server, client, n=660, known=False)
        memory(server, client)
    finally:
        server.close()


if __name__ == "__main__":
    main()
