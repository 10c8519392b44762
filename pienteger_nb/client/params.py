"""Checking completion parameters before anything is sent, and building the JSON body.

Ranges follow PIENTEGER_API.md. A bad value raises ``ValueError`` naming the parameter and
its range; an unknown keyword gets the nearest known name; ``user`` is refused because the
service fills it in itself. ``extra_body`` is merged last, unchecked, for new parameters.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

# name -> short description of what is allowed (used in error messages)
PARAMS: dict[str, str] = {
    "model": "a model id string",
    "prompt": "a string or a list of strings",
    "suffix": "a string or None",
    "max_tokens": "an integer >= 0",
    "temperature": "a number from 0 to 2",
    "top_p": "a number from 0 to 1",
    "n": "an integer from 1 to 128",
    "stop": "a string or a list of at most 4 strings",
    "echo": "True or False",
    "logprobs": "an integer from 0 to 5",
    "presence_penalty": "a number from -2 to 2",
    "frequency_penalty": "a number from -2 to 2",
    "best_of": "an integer from 1 to 20, at least n, not with streaming",
    "logit_bias": "a dict of token id -> number from -100 to 100",
    "seed": "an integer",
}

_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "max_tokens": (0, None),
    "n": (1, 128),
    "logprobs": (0, 5),
    "best_of": (1, 20),
}
_READ_ONLY = {"user": "the service fills in your Pienteger id itself; do not pass user"}
_NOT_HERE = {
    "stream": "use client.stream(...) to stream; complete() always returns the whole completion",
    "stream_options": "the client sets stream_options itself (Client(include_usage=False) turns usage off)",
}


def _bad(name: str, value: Any) -> ValueError:
    return ValueError(f"{name} must be {PARAMS[name]}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))  # type: ignore[arg-type]
    )


def check_names(params: Mapping[str, Any]) -> None:
    """Refuse unknown, read-only and misplaced keywords with a message that says what to do."""
    for name in params:
        if name in PARAMS:
            continue
        if name in _READ_ONLY:
            raise ValueError(f"{name} is read-only: {_READ_ONLY[name]}")
        if name in _NOT_HERE:
            raise ValueError(f"{name} is not a parameter here: {_NOT_HERE[name]}")
        near = difflib.get_close_matches(name, list(PARAMS), n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise ValueError(
            f"unknown parameter {name!r}{hint} (known: {', '.join(PARAMS)}; "
            "pass anything new with extra_body={...})"
        )


def check_value(name: str, value: Any) -> Any:
    """The value to send for one parameter (lists normalised), or ValueError."""
    if name in _NUMBER_RANGES:
        low, high = _NUMBER_RANGES[name]
        if not _is_number(value) or not low <= value <= high:
            raise _bad(name, value)
        # A Fraction, a Decimal-like Real or a numpy scalar: JSON takes only int and float.
        return value if type(value) in (int, float) else float(value)
    if name in _INT_RANGES:
        ilow, ihigh = _INT_RANGES[name]
        if not _is_int(value) or value < ilow or (ihigh is not None and value > ihigh):
            raise _bad(name, value)
        return int(value)
    if name == "model":
        if not isinstance(value, str) or not value.strip():
            raise _bad(name, value)
        return value
    if name == "prompt":
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and value and all(isinstance(p, str) for p in value):
            return list(value)
        raise _bad(name, value)
    if name == "suffix":
        if not isinstance(value, str):
            raise _bad(name, value)
        return value
    if name == "stop":
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and 1 <= len(value) <= 4 and all(isinstance(s, str)
                                                                             for s in value):
            return list(value)
        raise _bad(name, value)
    if name == "echo":
        if not isinstance(value, bool):
            raise _bad(name, value)
        return value
    if name == "seed":
        if not _is_int(value):
            raise _bad(name, value)
        return int(value)
    if name == "logit_bias":
        if not isinstance(value, Mapping):
            raise _bad(name, value)
        out: dict[str, float] = {}
        for token, bias in value.items():
            try:
                if isinstance(token, bool) or int(token) < 0:
                    raise ValueError(token)  # token ids are whole numbers from 0
                key = str(int(token))
            except (TypeError, ValueError):
                raise _bad(name, value) from None
            if not _is_number(bias) or not -100 <= bias <= 100:
                raise _bad(name, value)
            out[key] = bias if type(bias) in (int, float) else float(bias)
        return out
    raise ValueError(f"unknown parameter {name!r}")  # pragma: no cover - check_names runs first


def build_body(
    prompt: Any,
    *,
    model: str,
    stream: bool,
    include_usage: bool,
    params: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body for POST /completions; every known parameter checked, None values left out."""
    check_names(params)
    body: dict[str, Any] = {"model": check_value("model", model), "prompt": check_value("prompt", prompt)}
    for name, value in params.items():
        if value is None or name in ("model", "prompt"):
            continue
        body[name] = check_value(name, value)
    n = body.get("n", 1)
    if "best_of" in body:
        if stream:
            raise ValueError("best_of cannot be used with streaming; use client.complete(...) instead")
        if body["best_of"] < n:
            raise ValueError(f"best_of must be at least n ({n}), got {body['best_of']}")
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    if extra_body:
        if not isinstance(extra_body, Mapping):
            raise ValueError(f"extra_body must be a dict, got {type(extra_body).__name__}")
        try:
            json.dumps(extra_body)
        except (TypeError, ValueError) as exc:  # refused before sending, so no ledger row
            raise ValueError(f"extra_body must hold only JSON values: {exc}") from None
        body.update(extra_body)
    return body


__all__ = ["PARAMS", "build_body", "check_names", "check_value"]
