"""How fast the emulator answers, so client benchmarks never measure it by mistake.

Run: ``python benchmarks/emulator.py``. Prints the median single-call round trip (requests and
http.client), plain-call requests/s from 1 and 8 client threads (one requests.Session each), and
events/s for a 10,000-token stream (n=5 choices of 2,000 tokens: no model's context holds 10,000)
with no rate limit. Medians over repeats. Each figure is measured twice: with the emulator in this
process (as the tests run it; clients and server share one GIL) and in a separate process (what the
emulator itself can serve). About 40 seconds.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import multiprocessing.connection
import statistics
import threading
import time

import requests

from pienteger_nb.emulator import Emulator

KEY = "bench-key"
BODY = {"model": "text-davinci-003", "prompt": "Say this is a test", "max_tokens": 16, "temperature": 0}


class Target:
    """Where the emulator listens."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/oaiv1"


def _serve_elsewhere(conn: multiprocessing.connection.Connection) -> None:
    with Emulator(KEY, natural_end=False) as emu:
        conn.send(emu.port)
        conn.recv()  # until the parent says stop


def round_trip_ms(emu: Target, calls: int = 400) -> tuple[float, float]:
    """Median milliseconds per plain call: (requests.Session, http.client keep-alive)."""
    times = []
    with requests.Session() as s:
        s.headers["X-Api-Key"] = KEY
        for _ in range(50):
            s.post(emu.url + "/completions", json=BODY)
        for _ in range(calls):
            t = time.perf_counter()
            s.post(emu.url + "/completions", json=BODY).raise_for_status()
            times.append(time.perf_counter() - t)
    conn = http.client.HTTPConnection("127.0.0.1", emu.port)
    body = json.dumps(BODY)
    headers = {"X-Api-Key": KEY, "Content-Type": "application/json"}
    raw_times = []
    for i in range(calls + 50):
        t = time.perf_counter()
        conn.request("POST", "/oaiv1/completions", body, headers)
        resp = conn.getresponse()
        resp.read()
        if i >= 50:
            raw_times.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(times) * 1000, statistics.median(raw_times) * 1000


def requests_per_second(emu: Target, threads: int, calls_each: int) -> float:
    sessions = []
    for _ in range(threads):
        s = requests.Session()
        s.headers["X-Api-Key"] = KEY
        s.post(emu.url + "/completions", json=BODY)  # open the connection before the clock starts
        sessions.append(s)
    go = threading.Barrier(threads + 1)

    def work(s: requests.Session) -> None:
        go.wait()
        for _ in range(calls_each):
            s.post(emu.url + "/completions", json=BODY).raise_for_status()

    workers = [threading.Thread(target=work, args=(s,)) for s in sessions]
    for w in workers:
        w.start()
    go.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    for s in sessions:
        s.close()
    return threads * calls_each / elapsed


def stream_events_per_second(emu: Target, tokens: int = 10_000) -> float:
    with requests.Session() as s:
        s.headers["X-Api-Key"] = KEY
        start = time.perf_counter()
        resp = s.post(emu.url + "/completions", stream=True,
                      json={**BODY, "n": 5, "max_tokens": tokens // 5, "stream": True})
        data = b"".join(resp.iter_content(chunk_size=None))
        elapsed = time.perf_counter() - start
    events = data.count(b"data: ")
    assert events == tokens + 1, events  # every token, then [DONE]
    return events / elapsed


def report(emu: Target, where: str, repeats: int = 5) -> None:
    print(f"emulator {where}:")
    trips = [round_trip_ms(emu) for _ in range(3)]
    print(f"  single plain call round trip:   {statistics.median(t[0] for t in trips):.3f} ms median "
          f"(requests.Session), {statistics.median(t[1] for t in trips):.3f} ms (http.client)")
    one = [requests_per_second(emu, 1, 500) for _ in range(repeats)]
    print(f"  plain calls, 1 client thread:   {statistics.median(one):8.0f} requests/s (median of {repeats})")
    eight = [requests_per_second(emu, 8, 100) for _ in range(repeats)]
    print(f"  plain calls, 8 client threads:  {statistics.median(eight):8.0f} requests/s (median of {repeats}); "
          f"ratio to 1 thread {statistics.median(eight) / statistics.median(one):.2f}")
    events = [stream_events_per_second(emu) for _ in range(repeats)]
    print(f"  10,000-token stream:            {statistics.median(events):8.0f} events/s (median of {repeats})")


def main() -> None:
    with Emulator(KEY, natural_end=False) as emu:
        report(Target(emu.port), "in this process")
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=_serve_elsewhere, args=(child,), daemon=True)
    server.start()
    try:
        report(Target(parent.recv()), "in its own process")
    finally:
        parent.send("stop")
        server.join(10)


if __name__ == "__main__":
    main()
