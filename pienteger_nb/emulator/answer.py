"""The answer to a checked completions request: plain JSON or the stream's chunks.

``Answer`` holds every choice as the pieces a stream sends (one token each, the echoed prompt
first), so a plain answer and a stream of the same request carry the same text.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .completions import ANSWERED_AS, CompletionRequest
from .generate import Generated, count_tokens, generate, make_rng, tokenize
from .wire import completion_id, dumps


@dataclass(frozen=True)
class ChoiceOut:
    """One answered choice as stream pieces; ``logprobs`` holds one dict per piece (or None)."""

    index: int
    pieces: tuple[str, ...]
    logprobs: tuple[dict[str, Any], ...] | None
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def merged_logprobs(self) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        merged: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                        "text_offset": []}
        for part in self.logprobs:
            for key, values in merged.items():
                values.extend(part[key])
        return merged


def _logprob_part(tokens: list[str], lps: list[float | None], tops: list[dict[str, float] | None],
                  offset: int) -> dict[str, Any]:
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _cut_at_stop(gen: Generated, stops: tuple[str, ...]) -> int | None:
    """Characters of the generated text to keep when a stop sequence occurs in it."""
    text = gen.text
    hits = [pos for pos in (text.find(s) for s in stops) if pos >= 0]
    return min(hits) if hits else None


def _choice(req: CompletionRequest, prompt: str, gen: Generated, index: int) -> ChoiceOut:
    keep = _cut_at_stop(gen, req.stop)
    tokens = list(gen.tokens)
    lps = list(gen.logprobs)
    alts = list(gen.alternatives)
    if keep is not None:
        finish = "stop"
        kept: list[str] = []
        used = 0
        for token in tokens:
            if used + len(token) > keep:
                if keep > used:
                    kept.append(token[: keep - used])
                break
            kept.append(token)
            used += len(token)
        tokens, lps, alts = kept, lps[: len(kept)], alts[: len(kept)]
    elif gen.natural_end or (len(tokens) < req.max_tokens):
        finish = "stop"
    else:
        finish = "length"
    pieces = list(tokens)
    parts: list[dict[str, Any]] | None = None
    if req.logprobs is not None:
        parts = []
        for j, token in enumerate(tokens):
            top: dict[str, float] = {}
            if req.logprobs:
                top[token] = lps[j]
                for k, other in enumerate(alts[j][1 : req.logprobs], 1):
                    top.setdefault(other, round(lps[j] - 0.75 * k, 5))
            parts.append(_logprob_part([token], [lps[j]], [top], 0))
        offset = len(prompt)
        for part in parts:
            part["text_offset"] = [offset]
            offset += len(part["tokens"][0])
    if req.echo:
        pieces.insert(0, prompt)
        if parts is not None:
            ptoks = tokenize(prompt)
            rng = random.Random(prompt)
            values = [round(-rng.random() * 4, 5) for _ in ptoks[1:]]
            # The first prompt token has nothing before it to be predicted from: null, as the service says.
            plps: list[float | None] = [None, *values][: len(ptoks)]
            ptops: list[dict[str, float] | None] = [None, *(
                ({t: lp} if req.logprobs else {}) for t, lp in zip(ptoks[1:], values, strict=True))][: len(ptoks)]
            parts.insert(0, _logprob_part(ptoks, plps, ptops, 0))
    return ChoiceOut(index, tuple(pieces), tuple(parts) if parts is not None else None, finish)


@dataclass(frozen=True)
class Answer:
    """Everything the response says: choices, usage, ids."""

    id: str
    created: int
    model: str
    choices: tuple[ChoiceOut, ...]
    usage: dict[str, int]

    @property
    def events(self) -> int:
        """How many chunk events the stream sends (usage chunk included, [DONE] not)."""
        return sum(max(len(c.pieces), 1) for c in self.choices)

    def body(self) -> dict[str, Any]:
        """The plain (not streamed) answer."""
        return {
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [{"text": c.text, "index": c.index, "logprobs": c.merged_logprobs(),
                         "finish_reason": c.finish_reason} for c in self.choices],
            "usage": self.usage,
        }

    def chunks(self, *, include_usage: bool) -> Iterator[bytes]:
        """The stream's JSON payloads: choices interleaved by position, finish_reason on each last piece."""
        head = {"id": self.id, "object": "text_completion", "created": self.created}
        longest = max(max(len(c.pieces), 1) for c in self.choices)
        for pos in range(longest):
            for c in self.choices:
                count = max(len(c.pieces), 1)
                if pos >= count:
                    continue
                text = c.pieces[pos] if c.pieces else ""
                logprobs = c.logprobs[pos] if c.logprobs else (None if c.logprobs is None else
                                                                 _logprob_part([], [], [], 0))
                doc: dict[str, Any] = {**head, "choices": [{
                    "text": text, "index": c.index, "logprobs": logprobs,
                    "finish_reason": c.finish_reason if pos == count - 1 else None}],
                    "model": self.model}
                if include_usage:
                    doc["usage"] = None
                yield dumps(doc)
        if include_usage:
            yield dumps({**head, "choices": [], "model": self.model, "usage": self.usage})


def answer(req: CompletionRequest, *, natural_end: bool = True) -> Answer:
    """Generate the choices: ``n`` per prompt, the best of ``best_of`` candidates."""
    choices: list[ChoiceOut] = []
    prompt_tokens = 0
    completion_tokens = 0
    suffix_tokens = count_tokens(req.suffix) if req.suffix else 0
    top = req.logprobs or 0
    for p, prompt in enumerate(req.prompts):
        prompt_tokens += count_tokens(prompt) + suffix_tokens
        candidates = []
        for j in range(req.best_of):
            rng = make_rng(prompt=prompt, suffix=req.suffix, seed=req.seed,
                                    temperature=req.temperature, choice=j)
            gen = generate(prompt, max_tokens=req.max_tokens, rng=rng, natural_end=natural_end,
                                    top=max(top, 1) if req.logprobs is not None else 0)
            out = _choice(req, prompt, gen, 0)
            completion_tokens += count_tokens(out.text[len(prompt):] if req.echo else out.text)
            mean = sum(gen.logprobs) / len(gen.logprobs) if gen.logprobs else 0.0
            candidates.append((mean, j, out))
        if req.best_of > req.n:
            candidates.sort(key=lambda c: (-c[0], c[1]))
        for i, (_, _, out) in enumerate(candidates[: req.n]):
            choices.append(ChoiceOut(p * req.n + i, out.pieces, out.logprobs, out.finish_reason))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    return Answer(completion_id(), int(time.time()), ANSWERED_AS.get(req.model, req.model),
                  tuple(choices), usage)
