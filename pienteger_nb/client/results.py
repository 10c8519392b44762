"""Turning answers into typed results, estimating tokens, and the per-call record state."""

from __future__ import annotations

import datetime as _dt
import re
import time as _time
from dataclasses import dataclass, field
from typing import Any

from ..types import CallRecord, Choice, Completion, Usage
from .redact import NO_KEY, Redactor

_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def estimate_tokens(text: str | list[str] | None) -> int:
    """Tokens by the documented estimator (words, punctuation, runs of space)."""
    if not text:
        return 0
    if isinstance(text, str):
        return len(_TOKEN.findall(text))
    return sum(len(_TOKEN.findall(t)) for t in text)


@dataclass
class CallState:
    """What one call has learnt so far; becomes a CallRecord when it ends."""

    model: str
    prompt: Any
    stream: bool
    source: str
    endpoint: str = "completions"
    time: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.UTC))
    started: float = field(default_factory=_time.perf_counter)
    attempts: int = 0
    http_status: int | None = None
    request_id: str | None = None
    ratelimit: dict[str, int] = field(default_factory=dict)
    cache_key: str | None = None  # the replay cache's key, when this request may be stored/replayed
    cached: bool = False  # answered from the replay cache: nothing was sent
    redact: Redactor = NO_KEY  # masks the key out of the recorded error, whatever raised it
    deadline: float | None = None  # on the client's clock, when Client(deadline=...) is set

    def record(
        self,
        status: str,
        *,
        error: BaseException | None = None,
        usage: Usage | None = None,
        text: str | list[str] | None = None,
        finish_reason: str | None = None,
        ttft_s: float | None = None,
        latency_s: float | None = None,
        answer: Completion | None = None,
    ) -> CallRecord:
        """The CallRecord for this call's outcome (the error as "ClassName: message")."""
        return CallRecord(
            time=self.time,
            source=self.source,
            model=self.model,
            status=status,  # type: ignore[arg-type]
            endpoint=self.endpoint,
            error=self.redact(f"{type(error).__name__}: {error}") if error is not None else "",
            http_status=self.http_status,
            stream=self.stream,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            usage_source=usage.source if usage else None,
            latency_s=latency_s if latency_s is not None else _time.perf_counter() - self.started,
            ttft_s=ttft_s,
            finish_reason=self.redact(finish_reason) if finish_reason and self.redact else finish_reason,
            attempts=max(self.attempts, 1),
            request_id=self.request_id,
            prompt=self.prompt,
            text=text,
            cached=self.cached,
            cache_key=self.cache_key,
            # only a fresh success is stored; a replay or a failure never is
            answer=answer if status == "ok" and self.cache_key and not self.cached else None,
        )


def record_text(texts: list[str]) -> str | list[str]:
    """What a CallRecord keeps of the generated text: the text, or every choice's (by index)
    when there are several (n > 1 or a list of prompts)."""
    return texts[0] if len(texts) == 1 else texts


def estimated_usage(prompt: Any, texts: list[str]) -> Usage:
    """Usage counted by the estimator, marked ``estimated``."""
    p = estimate_tokens(prompt)
    c = sum(estimate_tokens(t) for t in texts)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c, source="estimated")


def usage_from(data: Any) -> Usage | None:
    """A reported Usage from a ``usage`` object, or None when absent or unusable."""
    if not isinstance(data, dict):
        return None
    try:
        p = int(data.get("prompt_tokens") or 0)
        c = int(data.get("completion_tokens") or 0)
        t = int(data.get("total_tokens") or (p + c))
    except (TypeError, ValueError):
        return None
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=t, source="reported")


def choices_from(items: Any, redact: Redactor = NO_KEY) -> tuple[Choice, ...]:
    """Choices sorted by ``index`` (``finish_reason`` masked: a careless service may echo anything)."""
    out = []
    for position, item in enumerate(items or ()):
        if not isinstance(item, dict):
            continue
        index = item.get("index")
        text = item.get("text") or ""
        if not isinstance(text, str):
            raise TypeError(f"choice text must be a string, got {type(text).__name__}")
        out.append(
            Choice(
                text=text,
                index=int(index) if isinstance(index, int) else position,
                finish_reason=_masked(item.get("finish_reason"), redact),
                logprobs=item.get("logprobs"),
            )
        )
    out.sort(key=lambda c: c.index)
    return tuple(out)


def completion_from(data: dict[str, Any], *, call: CallState, latency_s: float) -> Completion:
    """A Completion from a non-streamed answer; usage estimated when the answer had none."""
    choices = choices_from(data.get("choices"), call.redact)
    usage = usage_from(data.get("usage")) or estimated_usage(call.prompt, [c.text for c in choices])
    return Completion(
        id=call.redact(str(data.get("id") or "")),  # a careless service may echo anything back
        model=call.redact(str(data.get("model") or call.model)),
        choices=choices,
        usage=usage,
        created=int(data.get("created") or 0),
        request_id=call.request_id,
        latency_s=latency_s,
        ttft_s=None,
        attempts=max(call.attempts, 1),
        requested_model=call.model,
        ratelimit=dict(call.ratelimit),
    )


def _masked(value: Any, redact: Redactor) -> Any:
    return redact(value) if redact and isinstance(value, str) else value


def merge_logprobs(old: dict[str, Any] | None, new: Any) -> dict[str, Any] | None:
    """Streamed logprobs pieces concatenated list by list."""
    if not isinstance(new, dict):
        return old
    if old is None:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in new.items()}
    for key, value in new.items():
        if isinstance(value, list) and isinstance(old.get(key), list):
            old[key].extend(value)
        else:
            old[key] = value
    return old


__all__ = ["CallState", "choices_from", "completion_from", "estimate_tokens", "estimated_usage", "usage_from"]
