"""Masking the key out of whatever the service sends back, in the encodings it may come in.

A service (or a proxy in front of it) may quote the key back: raw, inside JSON escapes
(``\\/``, ``\\"``, ``\\\\``, ``\\uXXXX``), HTML-escaped, percent-encoded or in a header. Text
that was JSON is masked after decoding (``mask_json``); other text is masked in every
encoded form we know of (``Redactor.__call__``), before anything is cut short, so no piece of
the key survives a ``[:200]`` either.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

from ..config import Secret, mask


def _forms(key: str) -> list[str]:
    """Every spelling of ``key`` we mask, longest first (so a longer one is not half-masked)."""
    as_json = json.dumps(key)[1:-1]
    forms = {
        key,
        as_json,
        as_json.replace("/", "\\/"),
        "".join(f"\\u{ord(c):04x}" for c in key),
        "".join(f"\\u{ord(c):04X}" for c in key),
        html.escape(key),
        html.escape(key, quote=False),
        html.escape(key).replace("&#x27;", "&#39;"),
        repr(key)[1:-1],
        repr(as_json)[1:-1],
        quote(key, safe=""),
        quote(key),
    }
    forms.discard("")
    return sorted(forms, key=len, reverse=True)


class Redactor:
    """``redact(text)``: the text with the key, in any of its known spellings, masked."""

    __slots__ = ("_forms", "_masked")

    def __init__(self, secret: Secret | str | None):
        key = secret.get() if isinstance(secret, Secret) else (secret or "")
        self._forms = _forms(key) if key else []
        self._masked = mask(key) if key else ""

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, self._masked)
        return text

    def optional(self, text: str | None) -> str | None:
        """``None`` stays None; anything else is masked."""
        return None if text is None else self(text)

    def value(self, value: Any) -> Any:
        """A decoded JSON value with every string in it (keys of objects too) masked."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


NO_KEY = Redactor(None)

__all__ = ["NO_KEY", "Redactor"]
