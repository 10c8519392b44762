"""The worst case of a request, from its body alone: nothing is sent."""

from __future__ import annotations

import math
from typing import Any

from ..spend import SpendPolicy
from ..types import Estimate
from .results import estimate_tokens

# What the service generates when a request gives no max_tokens (the API's documented default).
SERVICE_DEFAULT_MAX_TOKENS = 16


def _prompt_tokens(prompt: Any, suffix: str, ratio: float) -> tuple[int, int]:
    """(rows, estimated prompt tokens) for a prompt: a string, a list of strings, or token ids."""
    if isinstance(prompt, str):
        prompts: list[Any] = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return 1, len(prompt)  # already tokens
    else:
        prompts = list(prompt)
    tokens = 0
    for one in prompts:
        if isinstance(one, list):
            tokens += len(one)
        else:
            text = str(one) + suffix
            # The ratio is an average; a prompt of symbols has more tokens than it says. A
            # tokenizer does not join a word to the punctuation beside it, so the documented
            # estimator's count (words, punctuation, runs of space) is a floor for the worst case.
            tokens += max(1, math.ceil(len(text) / ratio), estimate_tokens(text))
    return len(prompts), tokens


def estimate_body(body: dict[str, Any], policy: SpendPolicy) -> Estimate:
    """The Estimate of a checked request body under ``policy``'s ratio and prices."""
    model = str(body["model"])
    ratio = policy.chars_per_token(model)
    if not ratio > 0:
        ratio = 4.0
    rows, prompt_tokens = _prompt_tokens(body.get("prompt", ""), str(body.get("suffix") or ""), ratio)
    max_tokens = body.get("max_tokens")
    per_prompt = (SERVICE_DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)) * int(
        body.get("n", 1)) * int(body.get("best_of", 1))
    completion = per_prompt * rows
    return Estimate(rows, prompt_tokens, completion, policy.cost(model, prompt_tokens, completion), model)


__all__ = ["SERVICE_DEFAULT_MAX_TOKENS", "estimate_body"]
