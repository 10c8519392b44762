"""Client benchmarks: each figure is a ratio against a baseline run side by side in this process.

Run: ``python benchmarks/client.py`` (about a minute; ``--quick`` for a smoke run).

1. ``Client.complete()`` vs a bare ``requests.Session().post(...).json()`` against the bundled
   emulator on loopback (target <= 1.10x). Recording is OFF for the client (``on_call=False``);
   a second line shows it with a ``:memory:`` usage ledger when that module is present.
2. Stream decoding, the same 10,000-event stream read three ways (targets: >= 1.0x faster than
   a naive ``iter_lines`` + ``json.loads`` loop, >= 10x faster than openai-python's stream).
   The stream is served by a tiny loopback server replaying pre-built bytes in the emulator's
   chunk format, one HTTP chunk per event: the emulator ends completions at a natural stop
   (a few hundred events), and its own per-event cost would swamp the parser cost compared here.
3. Memory while a 5 MB and a 50 MB stream are read (tracemalloc peak): the decoder keeps only
   the bytes after the last event boundary, so the peak is the assembled text (kept, and joined
   once at the end: 2x) plus a small constant that does not grow with the bytes read.

Medians over repeats, rounds alternating which side goes first.
"""

from __future__ import annotations

import argparse
import gc
import http.server
import json
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Self

import requests

from pienteger_nb import Client
from pienteger_nb.emulator import Emulator

KEY = "pk-bench-0123456789abcdef"
WORDS = [" the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", ",", " and", " é✅"]


def event(text: str, index: int = 0, finish: str | None = None) -> bytes:
    chunk = {"id": "cmpl-4Rb21E8e8e9uqrRADtoKCtuX", "object": "text_completion", "created": 1795664896,
             "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
             "model": "text-davinci:003", "usage": None}
    return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_events(count: int) -> Iterator[bytes]:
    """``count`` text events, a usage event and [DONE], each already framed as one HTTP chunk."""
    for i in range(count):
        yield frame(event(WORDS[i % len(WORDS)], finish="length" if i == count - 1 else None))
    usage = {"id": "cmpl-4Rb21E8e8e9uqrRADtoKCtuX", "object": "text_completion", "created": 1795664896,
             "choices": [], "model": "text-davinci:003",
             "usage": {"prompt_tokens": 4, "completion_tokens": count, "total_tokens": count + 4}}
    yield frame(b"data: " + json.dumps(usage).encode() + b"\n\n")
    yield frame(b"data: [DONE]\n\n")


class ReplayServer:
    """Loopback HTTP/1.1 server answering every POST with a chunked SSE body from ``make_body()``."""

    def __init__(self, make_body: Callable[[], Iterator[bytes]]):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nx-request-id: req_bench\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
                batch = [head]
                size = len(head)
                for piece in outer.make_body():
                    batch.append(piece)
                    size += len(piece)
                    if size >= 1 << 16:
                        self.wfile.write(b"".join(batch))
                        batch, size = [], 0
                batch.append(b"0\r\n\r\n")
                self.wfile.write(b"".join(batch))
                self.wfile.flush()

        self.make_body = make_body
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oaiv1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(ours: Callable[[], object], base: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median seconds of (ours, base), alternating which goes first."""
    ours(), base()  # warm up connections and caches
    a: list[float] = []
    b: list[float] = []
    for r in range(rounds):
        gc.collect()
        if r % 2:
            b.append(timed(base))
            a.append(timed(ours))
        else:
            a.append(timed(ours))
            b.append(timed(base))
    return statistics.median(a), statistics.median(b)


def paired(ours: Callable[[], object], base: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median seconds per call of (ours, base), timed call by call, interleaved, order alternating.

    Pairing call by call keeps a burst of load from another process out of one side only.
    """
    for _ in range(20):
        ours(), base()
    a: list[float] = []
    b: list[float] = []
    clock = time.perf_counter
    for i in range(calls):
        first, second, fa, fb = (ours, base, a, b) if i % 2 == 0 else (base, ours, b, a)
        t0 = clock()
        first()
        t1 = clock()
        second()
        t2 = clock()
        fa.append(t1 - t0)
        fb.append(t2 - t1)
    return statistics.median(a), statistics.median(b)


def bench_complete(calls: int) -> None:
    with Emulator(api_key=KEY) as emu:
        client = Client(api_key=KEY, base_url=emu.url, on_call=False)
        session = requests.Session()
        params = {"model": "text-davinci-003", "prompt": "Say this is a test", "max_tokens": 7,
                  "temperature": 0}
        url = emu.url + "/completions"

        def ours() -> None:
            client.complete("Say this is a test", model="text-davinci-003", max_tokens=7, temperature=0)

        def bare() -> None:
            session.post(url, json=params, headers={"X-Api-Key": KEY}).json()

        t_ours, t_base = paired(ours, bare, calls)
        print(f"complete() vs bare Session.post().json() [recording off]: "
              f"{t_ours * 1e3:.3f} ms vs {t_base * 1e3:.3f} ms per call "
              f"(median of {calls} interleaved pairs) "
              f"-> {t_ours / t_base:.3f}x  (target <= 1.10x)")
        try:
            from pienteger_nb.ledger.store import UsageLog
        except ImportError:
            print("  (usage ledger not present: no figure with recording on)")
            return
        log = UsageLog(":memory:")
        recorded = Client(api_key=KEY, base_url=emu.url, on_call=log.record)

        def ours_recorded() -> None:
            recorded.complete("Say this is a test", model="text-davinci-003", max_tokens=7, temperature=0)

        t_rec, t_base = paired(ours_recorded, bare, calls)
        print(f"complete() vs bare [recording on, to a :memory: UsageLog]: {t_rec * 1e3:.3f} ms vs "
              f"{t_base * 1e3:.3f} ms -> {t_rec / t_base:.3f}x")
        log.close()


def bench_stream(events: int, rounds: int, openai_rounds: int) -> None:
    body = b"".join(stream_events(events))
    with ReplayServer(lambda: iter((body,))) as srv:
        client = Client(api_key=KEY, base_url=srv.url, on_call=False)
        session = requests.Session()
        url = srv.url + "/completions"
        params = {"model": "text-davinci-003", "prompt": "x", "stream": True}
        out: dict[str, str] = {}

        def ours() -> None:
            with client.stream("x", model="text-davinci-003") as s:
                for _ in s:
                    pass
            out["ours"] = s.text

        def naive() -> None:
            resp = session.post(url, json=params, headers={"X-Api-Key": KEY}, stream=True)
            pieces = []
            for line in resp.iter_lines():
                if line.startswith(b"data: "):
                    data = line[6:]
                    if data == b"[DONE]":
                        break
                    for choice in json.loads(data)["choices"]:
                        if choice["index"] == 0:
                            pieces.append(choice["text"])
            resp.close()
            out["naive"] = "".join(pieces)

        t_ours, t_naive = side_by_side(ours, naive, rounds)
        assert out["ours"] == out["naive"], "the two readers disagree"
        print(f"stream of {events} events: ours {t_ours * 1e3:.1f} ms, naive iter_lines+json.loads "
              f"{t_naive * 1e3:.1f} ms -> {t_naive / t_ours:.2f}x faster  (target >= 1.0x)")
        try:
            import openai
        except ImportError:
            print("  openai not installed: pip install -e '.[bench]'")
            return
        oai = openai.OpenAI(base_url=srv.url, api_key="x", default_headers={"X-Api-Key": KEY}, max_retries=0)

        def with_openai() -> None:
            pieces = []
            for chunk in oai.completions.create(model="text-davinci-003", prompt="x", stream=True):
                for choice in chunk.choices:
                    if choice.index == 0:
                        pieces.append(choice.text)
            out["openai"] = "".join(pieces)

        t_ours, t_oai = side_by_side(ours, with_openai, openai_rounds)
        assert out["ours"] == out["openai"], "ours and openai disagree"
        print(f"stream of {events} events: ours {t_ours * 1e3:.1f} ms, openai-python {t_oai * 1e3:.1f} ms "
              f"-> {t_oai / t_ours:.1f}x faster  (target >= 10x)")


def bench_memory(megabytes: list[int]) -> None:
    one = frame(event(" word"))
    for mb in megabytes:
        count = mb * 1_000_000 // len(one)

        def body(count: int = count) -> Iterator[bytes]:
            for _ in range(count // 100):
                yield one * 100
            yield from stream_events(1)

        with ReplayServer(body) as srv:
            client = Client(api_key=KEY, base_url=srv.url, on_call=False)
            gc.collect()
            tracemalloc.start()
            start = time.perf_counter()
            with client.stream("x") as s:
                for _ in s:
                    pass
            seconds = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            text = len(s.text)
            # The text is kept (s.text, s.completion) and joined once at the end, so the peak is
            # about 2x the text; what is left over is the decoder and buffers, which must stay flat.
            print(f"{mb:>3} MB stream ({count} events, {seconds:.1f} s under tracemalloc): peak "
                  f"{peak / 1e6:.2f} MB = 2 x assembled text ({text / 1e6:.2f} MB) + "
                  f"{(peak - 2 * text) / 1e6:.2f} MB for everything else")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    quick = args.quick
    print("pienteger_nb client benchmarks (medians; rounds alternate which side goes first)")
    bench_complete(calls=300 if quick else 2000)
    bench_stream(events=10_000, rounds=3 if quick else 15, openai_rounds=1 if quick else 3)
    bench_memory([5, 50] if not quick else [2, 10])


if __name__ == "__main__":
    main()
