"""Deterministic English-like text: the documented tokenizer and a small Markov generator.

The tokenizer is the one PIENTEGER_API users can reproduce: ``len(re.findall(TOKEN_PATTERN, text))``.
Generated text is a sequence of such tokens taken from an order-2 chain over ``corpus.CORPUS``, so
counting the concatenated text gives back exactly the number of tokens generated.
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass

from .corpus import CORPUS

TOKEN_PATTERN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_SENTENCE_END = frozenset({".", "!", "?"})


def tokenize(text: str) -> list[str]:
    """The tokens of ``text`` under the documented tokenizer."""
    return TOKEN_PATTERN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens ``text`` is under the documented tokenizer."""
    return len(TOKEN_PATTERN.findall(text))


def _key(token: str) -> str:
    return token.strip().lower()


@dataclass(frozen=True)
class _Chain:
    order2: dict[tuple[str, str], tuple[str, ...]]
    order1: dict[str, tuple[str, ...]]
    starts: tuple[str, ...]  # sentence openings, each with a leading space


@functools.cache
def _chain() -> _Chain:
    # Paragraphs keep their blank line (it rides on the next word: "\n\nThe"); lines inside a
    # paragraph are joined with single spaces.
    paragraphs = [" ".join(p.split()) for p in CORPUS.strip().split("\n\n")]
    tokens = tokenize("\n\n".join(paragraphs))
    order2: dict[tuple[str, str], list[str]] = {}
    order1: dict[str, list[str]] = {}
    starts: list[str] = []
    for i in range(len(tokens) - 1):
        nxt = tokens[i + 1]
        order1.setdefault(_key(tokens[i]), []).append(nxt)
        if i > 0:
            order2.setdefault((_key(tokens[i - 1]), _key(tokens[i])), []).append(nxt)
        if tokens[i] in _SENTENCE_END and nxt.startswith(" ") and nxt[1:2].isupper():
            starts.append(nxt)
    # The corpus ends after a full stop; let the chain wrap around so it never runs dry.
    order1.setdefault(_key(tokens[-1]), []).extend(starts[:3])
    return _Chain(
        order2={k: tuple(v) for k, v in order2.items()},
        order1={k: tuple(v) for k, v in order1.items()},
        starts=tuple(starts),
    )


@dataclass(frozen=True)
class Generated:
    """One generated choice: its tokens, per-token log probabilities and top alternatives."""

    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    alternatives: tuple[tuple[str, ...], ...]
    natural_end: bool  # True when the text ended at a sentence end before max_tokens

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def make_rng(*, prompt: str, suffix: str | None, seed: int | None, temperature: float,
             choice: int) -> random.Random:
    """The random source for one choice: fixed by (prompt, suffix, seed) at temperature 0 or with a seed."""
    if temperature == 0:
        return random.Random(f"{prompt}\x00{suffix}\x00{seed}")
    if seed is not None:
        return random.Random(f"{prompt}\x00{suffix}\x00{seed}\x00{temperature}\x00{choice}")
    return random.Random()


def generate(prompt: str, *, max_tokens: int, rng: random.Random, natural_end: bool = True,
             top: int = 0) -> Generated:
    """Up to ``max_tokens`` tokens continuing ``prompt``; may stop early at a sentence end.

    ``top`` alternatives (with log probabilities) are drawn for each token for ``logprobs``.
    """
    chain = _chain()
    # Drawn first so the same rng gives the same prefix whatever max_tokens is.
    sentences_wanted = rng.randint(2, 6) if natural_end else -1
    prompt_keys = [_key(t) for t in tokenize(prompt)[-2:]]
    prev = prompt_keys[-2] if len(prompt_keys) == 2 else ""
    last = prompt_keys[-1] if prompt_keys else "."
    tokens: list[str] = []
    logprobs: list[float] = []
    alternatives: list[tuple[str, ...]] = []
    sentences = 0
    ended = False
    while len(tokens) < max_tokens:
        options = chain.order2.get((prev, last)) or chain.order1.get(last) or chain.starts
        token = rng.choice(options)
        if not tokens and (token[:1].isalnum() or not prompt.strip()):
            # A first word glued to the prompt would merge with its last token; open a sentence.
            options = chain.starts
            token = rng.choice(options)
        tokens.append(token)
        # A likely token scores near 0, a rare one lower: the share of the options it takes.
        share = options.count(token) / len(options)
        logprobs.append(round(math.log(share) - rng.random() * 0.05, 5))
        if top:
            others = [o for o in dict.fromkeys(options) if o != token][: top - 1]
            while len(others) < top - 1:
                others.append(rng.choice(chain.starts))
            alternatives.append((token, *others))
        prev, last = last, _key(token)
        if token in _SENTENCE_END:
            sentences += 1
            if sentences == sentences_wanted:
                ended = True
                break
    return Generated(tuple(tokens), tuple(logprobs), tuple(alternatives), ended)
