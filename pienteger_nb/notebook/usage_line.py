"""The usage line under a ``%%pienteger`` output: it counts live while the text streams
(tokens, cost and seconds so far), then says what the call used and cost, or "cached".

It is a display of its own, updated in place on the stream view's ticks, so it never adds to
the 20 updates a second the text is held to. In terminal IPython only the final line prints.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from ..client.results import estimate_tokens
from ..ledger.prices import cost_usd, format_usd
from ..types import Completion

Price = Callable[[str, int, int], "float | None"]


def call_cost(completion: Completion, price: Price = cost_usd) -> float | None:
    """What the call cost in USD: 0 for a replay, None when the model is unpriced."""
    if completion.cached:
        return 0.0
    u = completion.usage
    return price(completion.requested_model or completion.model, u.prompt_tokens, u.completion_tokens)


def bundle(line: str, metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = {
        "text/plain": line,
        "text/html": f'<div style="color:#777;font-size:smaller">{html.escape(line)}</div>',
    }
    return data, {"pienteger": {"usage_line": True, **metadata}}


class LiveUsage:
    """Counts a streaming call's tokens, cost and seconds; ``tick`` shows them, ``done`` the end.

    ``sink`` is a fresh display (None: no live line, as in a terminal); ``clock`` the magic's.
    """

    def __init__(self, *, model: str, prompt: str, sink: Any, clock: Callable[[], float],
                 price: Price = cost_usd):
        self.model = model
        self.prompt_tokens = estimate_tokens(prompt)
        self.completion_tokens = 0
        self.sink = sink
        self.clock = clock
        self.price = price
        self.started = clock()
        self.updates = 0
        self.line = ""

    def count(self, delta: str) -> None:
        """Add a piece of new text (of any choice)."""
        self.completion_tokens += estimate_tokens(delta)

    def recount(self, texts: Iterable[str]) -> None:
        """Count every choice's whole text afresh (n > 1, where pieces interleave)."""
        self.completion_tokens = sum(map(estimate_tokens, texts))

    def live_line(self) -> str:
        cost = format_usd(self.price(self.model, self.prompt_tokens, self.completion_tokens))
        seconds = self.clock() - self.started
        return (f"{self.model} · {self.prompt_tokens} → {self.completion_tokens} tokens so far · "
                f"{cost} · {seconds:.1f} s")

    def tick(self) -> None:
        """Show the counts now (call when the text view has just been updated)."""
        if self.sink is None:
            return
        self.line = self.live_line()
        self.sink.final(*bundle(self.line, {"live": True}))
        self.updates += 1

    def done(self, data: dict[str, Any], metadata: dict[str, Any], *, fallback: Any) -> None:
        """The finished line: in place of the live one, or in ``fallback`` when none was shown."""
        self.line = data["text/plain"]
        (self.sink if self.sink is not None and self.updates else fallback).final(data, metadata)


__all__ = ["LiveUsage", "bundle", "call_cost", "format_usd"]
