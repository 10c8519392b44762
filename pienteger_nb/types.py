"""Typed, immutable results: Model, Usage, Choice, Completion, Chunk and CallRecord."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal

UsageSource = Literal["reported", "estimated"]
CallStatus = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True)
class Model:
    """One model the service offers."""

    id: str
    owned_by: str = ""
    object: str = "model"
    permission: tuple[Any, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        return cls(
            id=str(data.get("id", "")),
            owned_by=str(data.get("owned_by") or ""),
            object=str(data.get("object") or "model"),
            permission=tuple(data.get("permission") or ()),
        )


@dataclass(frozen=True)
class Usage:
    """Token counts; ``source`` says whether the service reported them or we estimated."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    source: UsageSource = "reported"


@dataclass(frozen=True)
class Choice:
    """One generated text; ``index`` = prompt position * n + i."""

    text: str
    index: int = 0
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


@dataclass(frozen=True)
class Completion:
    """A finished completion. ``text`` and ``finish_reason`` are the first choice's."""

    id: str
    model: str
    choices: tuple[Choice, ...]
    usage: Usage
    created: int = 0
    request_id: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    attempts: int = 1
    requested_model: str | None = None
    # remaining quota from x-ratelimit-remaining-* headers: "requests"/"tokens" -> int
    ratelimit: dict[str, int] = field(default_factory=dict, compare=False)
    # True when the answer came from the replay cache, not from the service (nothing was paid)
    cached: bool = False

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    def _repr_markdown_(self) -> str:
        return self.text


@dataclass(frozen=True)
class Chunk:
    """One decoded streaming event: new text for one choice, or the closing usage."""

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None
    usage: Usage | None = None
    id: str = ""
    model: str = ""
    created: int = 0


@dataclass(frozen=True)
class CallRecord:
    """The outcome of one API call, as the client reports it to its ``on_call`` hook.

    One record per call, whatever happened: the usage ledger turns each into a row.
    ``prompt`` and ``text`` are always filled here; the ledger stores them only when asked.
    """

    time: _dt.datetime
    source: str
    model: str
    status: CallStatus
    endpoint: str = "completions"
    error: str = ""
    http_status: int | None = None
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    usage_source: UsageSource | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    finish_reason: str | None = None
    attempts: int = 1
    request_id: str | None = None
    prompt: str | list[str] | None = None
    text: str | list[str] | None = None
    execution_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The notebook's path; None: the ledger asks the running kernel when it records the row.
    notebook: str | None = None
    # Replay cache: ``cached`` when the answer was replayed (nothing sent); ``cache_key`` names
    # the request's stored answer; ``answer`` is the Completion to keep under it (set only when
    # a successful call may be stored, so the recorder can file it with the row).
    cached: bool = False  # its ledger row costs 0, whatever the prices
    cache_key: str | None = None
    answer: Completion | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Estimate:
    """What a call (or a batch) will cost at most, worked out without sending anything.

    ``prompt_tokens`` is estimated from the characters (this ledger's own ratio for the model);
    ``max_completion_tokens`` is ``max_tokens x n x best_of`` per prompt; ``cost_max`` is the
    worst case in USD, None (NA) when the model is unpriced. Estimates add up with ``+``.
    """

    rows: int
    prompt_tokens: int
    max_completion_tokens: int
    cost_max: float | None
    model: str = ""

    @property
    def max_tokens(self) -> int:
        """The worst case in tokens: prompt plus every completion token that may be generated."""
        return self.prompt_tokens + self.max_completion_tokens

    def __add__(self, other: Estimate) -> Estimate:
        if not isinstance(other, Estimate):
            return NotImplemented
        cost = None if self.cost_max is None or other.cost_max is None else self.cost_max + other.cost_max
        model = self.model if self.model == other.model or not other.rows else (other.model if not self.rows else "")
        return Estimate(self.rows + other.rows, self.prompt_tokens + other.prompt_tokens,
                        self.max_completion_tokens + other.max_completion_tokens, cost, model)

    def describe(self) -> str:
        """One line: rows, tokens and the worst-case cost (or "unpriced")."""
        cost = "unpriced" if self.cost_max is None else f"at most ${self.cost_max:,.4f}"
        rows = f"{self.rows:,} prompt" + ("" if self.rows == 1 else "s")
        return (f"estimate: {rows}, ~{self.prompt_tokens:,} prompt tokens + up to "
                f"{self.max_completion_tokens:,} completion tokens, {cost}")

    def _repr_markdown_(self) -> str:
        return self.describe()


__all__ = ["CallRecord", "Choice", "Chunk", "Completion", "Estimate", "Model", "Usage"]
