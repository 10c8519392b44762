"""Workflow benchmarks: a comparison runs its combinations at once; a background cell returns at once.

Run as ``python benchmarks/workflow.py`` (about 20 seconds). The emulator runs in a child
process, so the client's threads do not share a GIL with the server. Figures:

1. ``compare`` over 3 models x 4 temperatures at 200 ms emulator latency, against one plain
   call with the same latency, side by side: median of 5 runs each; target ratio <= 1.3.
2. ``%%pienteger --background`` in a real InteractiveShell: the time ``run_cell`` takes to
   hand control back (the stream goes on in its thread), against a plain ``%%pienteger``
   cell that waits for its answer; median of 15 runs; target <= 20 ms.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from typing import Any

KEY = "pk-bench-0123456789abcdef"
REPEATS = 5
CELL_REPEATS = 15


def _serve(conn: Any, latency: float, tokens_per_second: float | None) -> None:
    from pienteger_nb.emulator import Emulator

    emu = Emulator(api_key=KEY, latency=latency, tokens_per_second=tokens_per_second).start()
    conn.send(emu.url)
    conn.recv()  # any message: stop
    emu.stop()


def _emulator(latency: float, tokens_per_second: float | None = None) -> tuple[Any, Any, str]:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(child, latency, tokens_per_second), daemon=True)
    proc.start()
    return proc, parent, parent.recv()


def bench_compare() -> None:
    from pienteger_nb import Client, compare

    proc, conn, url = _emulator(latency=0.2)
    try:
        client = Client(api_key=KEY, base_url=url)
        models = ["text-davinci-003", "text-curie-001", "text-ada-001"]
        temps = [0.0, 0.4, 0.8, 1.2]
        client.complete("warm up", max_tokens=8)
        one, many = [], []
        for _ in range(REPEATS):  # side by side: each round measures both under the same load
            t = time.perf_counter()
            with client.stream("Say hi", model="text-ada-001", max_tokens=8) as s:  # compare's rows stream too
                for _ in s:
                    pass
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            df = compare("Say hi", models=models, temperature=temps, client=client, max_tokens=8)
            many.append(time.perf_counter() - t)
            assert (df["error"] == "").all(), df["error"].tolist()
        m_one, m_many = statistics.median(one), statistics.median(many)
        print(f"compare, 3 models x 4 temperatures, 200 ms latency, median of {REPEATS}:")
        print(f"  one call        {m_one * 1000:7.1f} ms")
        print(f"  12 combinations {m_many * 1000:7.1f} ms   ratio {m_many / m_one:.2f} (target <= 1.3)")
    finally:
        conn.send("stop")
        proc.join(10)


def bench_background() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    proc, conn, url = _emulator(latency=0.05, tokens_per_second=200)
    try:
        os.environ.update(PIENTEGER_API_KEY=KEY, PIENTEGER_BASE_URL=url)
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "pienteger_nb")
        magics = ip.magics_manager.registry["PientegerMagics"]
        background, blocking = [], []
        with capture_output():
            ip.run_cell("%%pienteger --max-tokens 4\nwarm up")
            for _ in range(CELL_REPEATS):
                t = time.perf_counter()
                ip.run_cell("%%pienteger --background --max-tokens 40\nTell a story")
                background.append(time.perf_counter() - t)
                t = time.perf_counter()
                ip.run_cell("%%pienteger --max-tokens 40\nTell a story")
                blocking.append(time.perf_counter() - t)
            for job in magics.jobs.jobs.values():
                job.wait(30)
        states = {job.state for job in magics.jobs.jobs.values()}
        m_bg, m_block = statistics.median(background), statistics.median(blocking)
        print(f"background cell, 40 tokens at 200 tokens/s after 50 ms, median of {CELL_REPEATS}:")
        print(f"  --background returns in {m_bg * 1000:7.1f} ms (target <= 20 ms); jobs ended {sorted(states)}")
        print(f"  a plain cell takes      {m_block * 1000:7.1f} ms (ratio {m_bg / m_block:.3f})")
        ip.run_line_magic("unload_ext", "pienteger_nb")
    finally:
        conn.send("stop")
        proc.join(10)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PIENTEGER_USAGE_DB"] = os.path.join(tmp, "usage.sqlite")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; python {sys.version.split()[0]}")
        bench_compare()
        bench_background()


if __name__ == "__main__":
    main()
