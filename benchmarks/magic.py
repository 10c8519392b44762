"""Magic benchmarks: medians and ratios, each against a baseline run side by side.

Run: ``python benchmarks/magic.py`` (about 40 s; ``--quick`` for a smoke run).

1. The magic's own overhead per cell. The same request three ways, rounds alternating which
   goes first, against the bundled emulator on loopback: a plain ``client.complete`` call (the
   baseline: emulator + client), ``%%pienteger --no-stream`` and ``%%pienteger`` (streaming),
   the latter next to a plain ``client.stream`` loop; the plain calls also run as a cell, which
   separates IPython's own cost of running a cell. The magic's overhead is its median minus
   the plain call's median: parsing, interpolation, rendering, the display messages and the
   usage line (and, against the bare call, IPython's run_cell). Both sides record to the same SQLite ledger. Displays go to IPython's capturing
   publisher (in a kernel each message is also serialised onto ZMQ).
2. Front-end updates for a 2,000-token stream at 1,000 tokens/s (emulator
   ``tokens_per_second=1000``), with the real clock: messages sent and per second (target
   <= 20/s), and the delay from the first token's arrival (the stream yielding it) to its
   display message.
3. ``%load_ext pienteger_nb`` against importing IPython alone, in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

KEY = "pk-bench-0123456789abcdefBENCH"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def shell_with_magics() -> tuple[Any, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pienteger_nb")
    return ip, ip.magics_manager.registry["PientegerMagics"]


def run_cell(ip: Any, source: str) -> None:
    from IPython.utils.capture import capture_output

    with capture_output():
        res = ip.run_cell(source, silent=True)
    if not res.success:
        raise SystemExit(f"benchmark cell failed: {res.error_in_exec!r}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_overhead(ip: Any, rounds: int, calls: int) -> None:
    from pienteger_nb import Client
    from pienteger_nb.ledger.default import record_call

    client = Client(source="bench", on_call=record_call)
    prompt = "Write about {topic}"
    ip.user_ns["topic"] = "lighthouses"
    text = prompt.replace("{topic}", "lighthouses")

    def plain() -> None:
        client.complete(text, max_tokens=16)

    def plain_stream() -> None:
        with client.stream(text, max_tokens=16) as s:
            for _ in s:
                pass

    ip.user_ns["_bench_client"] = client
    cases: dict[str, Callable[[], None]] = {
        "client.complete": plain,
        "client.complete in a cell": lambda: run_cell(ip, f"_bench_client.complete({text!r}, max_tokens=16)"),
        "%%pienteger --no-stream": lambda: run_cell(ip, f"%%pienteger --no-stream --max-tokens 16\n{prompt}"),
        "client.stream loop": plain_stream,
        "client.stream loop in a cell": lambda: run_cell(
            ip, f"with _bench_client.stream({text!r}, max_tokens=16) as s:\n    for _ in s: pass\ndel s"
        ),
        "%%pienteger (stream)": lambda: run_cell(ip, f"%%pienteger --max-tokens 16\n{prompt}"),
    }
    for fn in cases.values():  # warm up: connections, imports, the ledger file
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    # Interleaved call by call, the order rotating, so drifting load on a shared machine
    # falls on every case alike.
    for i in range(rounds * calls):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(cases[name]))
    med = {name: median_ms(s) for name, s in samples.items()}
    print(
        "1. per cell, medians over", rounds * calls, "calls each, interleaved (16 tokens, loopback emulator)"
    )
    pairs = (
        ("client.complete in a cell", "client.complete"),
        ("%%pienteger --no-stream", "client.complete"),
        ("%%pienteger --no-stream", "client.complete in a cell"),
        ("%%pienteger (stream)", "client.stream loop"),
        ("%%pienteger (stream)", "client.stream loop in a cell"),
    )
    for magic, base in pairs:
        over = med[magic] - med[base]
        print(
            f"   {magic:<24} {med[magic]:6.2f} ms  vs  {base:<28} {med[base]:6.2f} ms   "
            f"overhead {over:+5.2f} ms   ratio {med[magic] / med[base]:.2f}x"
        )


def paired_own_time(ip: Any, source: str, samples: int) -> list[float]:
    """Per cell: its total time minus the time spent inside the client's calls (request,
    waiting for each chunk, closing), measured in the same run, so load drift cancels."""
    from pienteger_nb.client.client import Client
    from pienteger_nb.client.stream import Stream

    inside = [0.0]
    saved = {
        (Client, "complete"): Client.complete,
        (Client, "stream"): Client.stream,
        (Stream, "__exit__"): Stream.__exit__,
    }

    def timing(fn: Any) -> Any:
        def wrapper(*args: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                inside[0] += time.perf_counter() - start

        return wrapper

    original_iter = Stream.__iter__

    def timed_iter(self: Any) -> Any:
        it = original_iter(self)
        while True:
            start = time.perf_counter()
            try:
                delta = next(it)
            except StopIteration:
                inside[0] += time.perf_counter() - start
                return
            inside[0] += time.perf_counter() - start
            yield delta

    for (cls, name), fn in saved.items():
        setattr(cls, name, timing(fn))
    Stream.__iter__ = timed_iter  # type: ignore[method-assign]
    own: list[float] = []
    try:
        for _ in range(samples):
            inside[0] = 0.0
            total = timed(lambda: run_cell(ip, source))
            own.append(total - inside[0])
    finally:
        for (cls, name), fn in saved.items():
            setattr(cls, name, fn)
        Stream.__iter__ = original_iter  # type: ignore[method-assign]
    return own


def bench_own_time(ip: Any, samples: int) -> None:
    prompt = "Write about {topic}"
    plain = [timed(lambda: run_cell(ip, "pass")) for _ in range(samples)]
    nostream = paired_own_time(ip, f"%%pienteger --no-stream --max-tokens 16\n{prompt}", samples)
    stream = paired_own_time(ip, f"%%pienteger --max-tokens 16\n{prompt}", samples)
    print("   the magic's own time per cell (cell total minus time inside the client, paired per cell):")
    print(
        f"   --no-stream {median_ms(nostream):.2f} ms   stream (16 tokens) {median_ms(stream):.2f} ms   "
        f"(IPython running a cell that is just `pass`: {median_ms(plain):.2f} ms)"
    )


def bench_updates(ip: Any, emulator: Any, repeats: int) -> None:
    from pienteger_nb.client.stream import Stream

    emulator.tokens_per_second = 1000
    emulator.natural_end = False  # run to max_tokens
    original_iter = Stream.__iter__
    first_delta: list[float] = []

    def timed_iter(self: Any) -> Any:
        first = True
        for delta in original_iter(self):
            if first:
                first_delta.append(time.perf_counter())
                first = False
            yield delta

    counts, rates, delays, tokens = [], [], [], []
    Stream.__iter__ = timed_iter  # type: ignore[method-assign]
    try:
        for _ in range(repeats):
            published: list[float] = []
            from IPython.utils.capture import capture_output

            with capture_output():
                pub = ip.display_pub
                inner = pub.publish

                def publish(*args: Any, _inner: Any = inner, _log: list[float] = published, **kw: Any) -> Any:
                    _log.append(time.perf_counter())
                    return _inner(*args, **kw)

                pub.publish = publish
                start = time.perf_counter()
                res = ip.run_cell(
                    "%%pienteger --max-tokens 2000 -f text -o _bench\nTell a long story", silent=True
                )
                elapsed = time.perf_counter() - start
                del pub.publish
            if not res.success:
                raise SystemExit(f"stream cell failed: {res.error_in_exec!r}")
            stream_messages = len(published) - 2  # minus the final output and the usage line
            counts.append(stream_messages)
            rates.append(stream_messages / elapsed)
            delays.append(published[0] - first_delta[-1])
            tokens.append(ip.user_ns["_bench"].usage.completion_tokens)
    finally:
        Stream.__iter__ = original_iter  # type: ignore[method-assign]
        emulator.tokens_per_second = None
        emulator.natural_end = True
    print(f"2. a {statistics.median(tokens):.0f}-token stream at 1,000 tokens/s, medians over {repeats} runs")
    print(
        f"   streaming display messages {statistics.median(counts):.0f} "
        f"({statistics.median(rates):.1f}/s; target <= 20/s) for {statistics.median(tokens):.0f} tokens"
    )
    print(f"   first token arrival -> its display message: {statistics.median(delays) * 1e6:.0f} µs")


LOAD_CODE = """
import sys, time
t0 = time.perf_counter()
from IPython.core.interactiveshell import InteractiveShell
t1 = time.perf_counter()
ip = InteractiveShell.instance()
t2 = time.perf_counter()
{load}
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, 'pandas' in sys.modules, 'ipywidgets' in sys.modules)
"""


def bench_load(repeats: int) -> None:
    # As a user's install runs: with bytecode caches (PYTHONDONTWRITEBYTECODE, set on some
    # machines, would compile every module from source at each start). The first sample of
    # each variant writes the caches and is dropped.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def sample(load: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", LOAD_CODE.format(load=load)], check=True, capture_output=True, text=True,
            env=env,
        )
        return out.stdout.split()

    base: list[list[str]] = []
    ext: list[list[str]] = []
    warm: list[list[str]] = []
    load_ext = "ip.run_line_magic('load_ext', 'pienteger_nb')"
    variants = [
        ("", base),
        (load_ext, ext),
        ("import pienteger_nb; t2 = time.perf_counter(); " + load_ext, warm),
    ]
    for code, _ in variants:
        sample(code)  # writes the bytecode caches
    for i in range(repeats):  # rotate which goes first
        for code, into in variants[i % 3 :] + variants[: i % 3]:
            into.append(sample(code))
    imp = statistics.median(float(s[0]) for s in base)
    load = statistics.median(float(s[2]) for s in ext)
    own = statistics.median(float(s[2]) for s in warm)
    heavy = any(s[3] == "True" or s[4] == "True" for s in ext)
    print(f"3. fresh subprocesses, medians over {repeats}")
    print(
        f"   import IPython {imp * 1000:6.1f} ms   %load_ext pienteger_nb {load * 1000:6.1f} ms   "
        f"ratio {load / imp:.2f}x   pandas/ipywidgets loaded: {'yes' if heavy else 'no'}"
    )
    print(
        f"   %load_ext in a shell that has imported IPython: {load * 1000:5.1f} ms (target <= 30 ms): "
        f"import pienteger_nb {(load - own) * 1000:5.1f} ms, the magics {own * 1000:5.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run with few repeats")
    parser.add_argument("--load-only", action="store_true", help="only the %%load_ext timing (3.)")
    args = parser.parse_args()
    rounds, calls, repeats, loads = (2, 5, 1, 3) if args.quick else (10, 30, 3, 9)
    if args.load_only:
        bench_load(max(loads, 15))
        return

    from pienteger_nb.emulator import Emulator

    with tempfile.TemporaryDirectory() as tmp, Emulator(api_key=KEY) as emulator:
        os.environ.update(
            PIENTEGER_API_KEY=KEY,
            PIENTEGER_BASE_URL=emulator.url,
            PIENTEGER_USAGE_DB=os.path.join(tmp, "usage.sqlite"),
        )
        ip, _ = shell_with_magics()
        bench_overhead(ip, rounds, calls)
        bench_own_time(ip, rounds * calls)
        bench_updates(ip, emulator, repeats)
    bench_load(loads)


if __name__ == "__main__":
    main()
