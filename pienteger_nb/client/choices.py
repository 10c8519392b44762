"""Choices: a streamed completion's events folded into text, finish reasons and logprobs by index.

Memory stays about the size of the text: recent pieces are kept in a list and joined 512 at a
time into blocks, rather than one str object (~50 bytes) per token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from ..types import Choice, Chunk, Usage
from .results import merge_logprobs, usage_from

_BLOCK = 512


class Choices:
    """What the events of one stream have said so far (``fold`` each parsed event)."""

    def __init__(self) -> None:
        self.pieces: dict[int, list[str]] = {}
        self.blocks: dict[int, list[str]] = {}
        self.finish: dict[int, str | None] = {}
        self.logprobs: dict[int, dict[str, Any] | None] = {}
        self.usage: Usage | None = None
        self.id = ""
        self.model = ""
        self.created = 0

    def text_of(self, index: int) -> str:
        blocks = self.blocks.get(index)
        pieces = self.pieces.get(index, [])
        return "".join([*blocks, *pieces]) if blocks else "".join(pieces)

    def texts(self) -> dict[int, str]:
        """Text so far of every choice, by index."""
        return {i: self.text_of(i) for i in sorted(self.pieces)}

    def fold(self, obj: dict[str, Any]) -> tuple[str, bool]:
        """Keep one parsed event; returns the new text of choice 0 and whether any text came.

        A field of the wrong type raises TypeError before anything of its choice is kept.
        """
        if not self.id:
            self.id = str(obj.get("id") or "")
            self.model = str(obj.get("model") or "")
            self.created = int(obj.get("created") or 0)
        usage = obj.get("usage")
        if usage:
            self.usage = usage_from(usage)
        delta0 = ""
        any_text = False
        for choice in obj.get("choices") or ():
            index = choice.get("index", 0)
            text = choice.get("text")
            if type(index) is not int or (text is not None and type(text) is not str):
                raise TypeError("index must be an int and text a str")
            if text:
                any_text = True
                pieces = self.pieces.get(index)
                if pieces is None:
                    pieces = self.pieces[index] = []
                pieces.append(text)
                if len(pieces) >= _BLOCK:
                    self.blocks.setdefault(index, []).append("".join(pieces))
                    pieces.clear()
                if index == 0:
                    delta0 = text if not delta0 else delta0 + text
            elif index not in self.pieces:
                self.pieces[index] = []
            reason = choice.get("finish_reason")
            if reason:
                self.finish[index] = reason
            if choice.get("logprobs") is not None:
                self.logprobs[index] = merge_logprobs(self.logprobs.get(index), choice["logprobs"])
        return delta0, any_text

    def chunks_of(self, data: str) -> Iterator[Chunk]:
        """The Chunk objects of one event (already checked by ``fold``)."""
        obj = json.loads(data)
        for choice in obj.get("choices") or ():
            yield Chunk(
                index=choice.get("index", 0),
                text=choice.get("text") or "",
                finish_reason=choice.get("finish_reason"),
                logprobs=choice.get("logprobs"),
                id=self.id,
                model=self.model,
                created=self.created,
            )
        if obj.get("usage"):
            yield Chunk(usage=usage_from(obj["usage"]), id=self.id, model=self.model, created=self.created)

    def as_choices(self, texts: dict[int, str], redact: Callable[[str], str] | None = None) -> tuple[Choice, ...]:
        """The choices, ``finish_reason`` passed through ``redact`` (a service may echo anything)."""
        finish = {i: redact(f) if redact and isinstance(f, str) else f for i, f in self.finish.items()}
        return tuple(
            Choice(text=t, index=i, finish_reason=finish.get(i), logprobs=self.logprobs.get(i))
            for i, t in texts.items()
        )


__all__ = ["Choices"]
