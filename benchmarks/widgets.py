"""PromptForm speed: comm messages per second while streaming, Stop-to-close delay, token-to-screen delay.

Run: ``python benchmarks/widgets.py`` (no kernel needed: every widget message the form would
send is counted in-process, at ``Widget._send``, the one place ipywidgets hands a message to
its comm). The emulator serves over loopback in this process. Figures are medians over repeats.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ipywidgets as W

from pienteger_nb import Client
from pienteger_nb.emulator import Emulator
from pienteger_nb.notebook.form import PromptForm
from pienteger_nb.notebook.form_view import _Painter

KEY = "pk-bench-0123456789abcdef"
REPEATS = 5


class MessageCounter:
    """Counts widget messages (state updates) sent to the front end, with the time of each."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, tuple[str, ...]]] = []
        self.bytes = 0
        self._original: Callable[..., Any] = W.Widget._send

    def __enter__(self) -> Self:
        original, sent = self._original, self.sent

        def counting_send(widget: W.Widget, msg: dict[str, Any], buffers: Any = None) -> None:
            keys = tuple(sorted((msg.get("state") or {}).keys()))
            sent.append((time.perf_counter(), type(widget).__name__, keys))
            self.bytes += len(json.dumps(msg))
            original(widget, msg, buffers)

        W.Widget._send = counting_send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        W.Widget._send = self._original  # type: ignore[method-assign]


def _form(emu: Emulator, **kwargs: Any) -> PromptForm:
    client = Client(api_key=KEY, base_url=emu.url, on_call=False, max_retries=0)
    form = PromptForm(client, **kwargs)
    form.prompt.value = "Once upon a time"
    return form


def comm_messages(emu: Emulator, *, tokens: int = 2000, rate: float = 1000.0) -> dict[str, float]:
    """Messages sent while a ``tokens``-token stream arrives at ``rate`` tokens/s."""
    emu.tokens_per_second = rate
    per_s, totals, outputs, durations, sizes = [], [], [], [], []
    for _ in range(REPEATS):
        form = _form(emu)
        form.max_tokens.value = tokens
        with MessageCounter() as counter:
            start = time.perf_counter()
            form.submit()
            assert form.wait(60), "the stream did not finish"
            end = time.perf_counter()
        assert form.result is not None and form.result.usage.completion_tokens == tokens, form.status_text
        duration = end - start
        durations.append(duration)
        totals.append(len(counter.sent))
        outputs.append(sum(1 for _, cls, keys in counter.sent if cls == "Output" and "outputs" in keys))
        per_s.append(len(counter.sent) / duration)
        sizes.append(counter.bytes / 1024)
        form.close()
    return {
        "stream seconds": statistics.median(durations),
        "messages (all widgets)": statistics.median(totals),
        "of which Output updates": statistics.median(outputs),
        "messages per second": statistics.median(per_s),
        "KiB sent (whole text each)": statistics.median(sizes),
    }


def stop_delay(emu: Emulator, *, stall: bool) -> dict[str, float]:
    """Seconds from ``form.stop()`` to the stream's close being recorded, and to the thread's end."""
    emu.tokens_per_second = 1000.0
    to_close, to_join = [], []
    for _ in range(REPEATS * 2):
        closed = threading.Event()
        closed_at: list[float] = []

        def on_call(rec: Any, closed_at: list[float] = closed_at, closed: threading.Event = closed) -> None:
            closed_at.append(time.perf_counter())
            closed.set()

        client = Client(api_key=KEY, base_url=emu.url, on_call=on_call, max_retries=0)
        form = PromptForm(client)
        form.prompt.value = "Once upon a time"
        form.max_tokens.value = 4000
        painted = threading.Event()
        form.output.observe(lambda change, ev=painted: ev.set(), "outputs")
        if stall:
            emu.queue_fault("stall", after=20)  # the reader sits blocked in recv() when Stop comes
        form.submit()
        assert painted.wait(10)
        if stall:
            time.sleep(0.05)  # let the stream reach the stall (a benchmark may wait; a test may not)
        t0 = time.perf_counter()
        form.stop()
        assert closed.wait(10) and form.wait(10)
        joined = time.perf_counter()
        to_close.append(closed_at[0] - t0)
        to_join.append(joined - t0)
        form.close()
    return {"stop -> close recorded (ms)": 1000 * statistics.median(to_close),
            "stop -> thread ended (ms)": 1000 * statistics.median(to_join)}


def display_delay(emu: Emulator, *, rate: float, tokens: int) -> dict[str, float]:
    """Seconds from a token's arrival (the form hands it to its painter) to its text being set
    on the Output widget; median and worst over every token of every repeat."""
    emu.tokens_per_second = rate
    delays: list[float] = []
    original_offer = _Painter.offer
    arrivals: list[tuple[float, int]] = []

    def timed_offer(self: _Painter, text: str) -> None:
        arrivals.append((time.perf_counter(), len(text)))
        original_offer(self, text)

    _Painter.offer = timed_offer  # type: ignore[method-assign]
    try:
        for _ in range(REPEATS):
            arrivals.clear()
            shown: list[tuple[float, int]] = []
            form = _form(emu)
            form.max_tokens.value = tokens
            form.output.observe(
                lambda change, s=shown: s.append(
                    (time.perf_counter(), sum(len(o["data"]["text/markdown"]) for o in change["new"]))),
                "outputs",
            )
            form.submit()
            assert form.wait(60)
            i = 0
            for t_arrive, length in arrivals:
                while shown[i][1] < length:
                    i += 1
                delays.append(shown[i][0] - t_arrive)
            form.close()
    finally:
        _Painter.offer = original_offer  # type: ignore[method-assign]
    delays.sort()
    return {"median (ms)": 1000 * statistics.median(delays),
            "p95 (ms)": 1000 * delays[int(0.95 * (len(delays) - 1))],
            "max (ms)": 1000 * delays[-1]}


def _print(title: str, figures: dict[str, float]) -> None:
    print(title)
    for name, value in figures.items():
        print(f"  {name:<28} {value:10.2f}")


def main() -> None:
    with Emulator(api_key=KEY, natural_end=False) as emu:
        print(f"PromptForm benchmarks (medians over {REPEATS} runs; emulator on loopback)")
        msgs = comm_messages(emu, tokens=2000, rate=1000.0)
        _print("comm messages, 2,000-token stream at 1,000 tokens/s:", msgs)
        rate = msgs["of which Output updates"] / msgs["stream seconds"]
        verdict = "met" if msgs["messages per second"] <= 20 else "MISSED"
        print(f"  target <= 20 messages/s: {verdict} (Output updates alone: {rate:.1f}/s)")
        _print("Stop, mid-stream at 1,000 tokens/s:", stop_delay(emu, stall=False))
        _print("Stop, reader blocked on a stalled stream:", stop_delay(emu, stall=True))
        _print("token arrival -> shown in the widget, 1,000 tokens/s (throttled to 16/s):",
               display_delay(emu, rate=1000.0, tokens=1000))
        _print("token arrival -> shown in the widget, 10 tokens/s (each token at once):",
               display_delay(emu, rate=10.0, tokens=20))


if __name__ == "__main__":
    main()
