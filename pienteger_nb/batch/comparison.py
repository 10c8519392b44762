"""``compare``: one prompt over several models and settings at once, a row per combination.

It runs on the batch machinery (``workers.Run``): the same worker threads, shared rate limiter,
ledger recording (``source="compare"``) and interrupt handling as ``complete_many``, with the
model, temperature and seed set per row. Every combination runs at once (up to
``MAX_CONCURRENCY``), so a comparison takes about as long as its slowest call.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import AuthenticationError
from .frame import a_type
from .pacing import RateLimiter
from .progress import make_progress
from .workers import BatchInterruptedWarning, Run

if TYPE_CHECKING:  # pragma: no cover
    from ..client.client import Client

COLUMNS = (
    "model",
    "temperature",
    "seed",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_s",
    "cost",
    "error",
)
# More than this many requests at once is a burst a service's rate limit would answer with 429s.
MAX_CONCURRENCY = 16
# A wrong key fails every combination alike: stop at the first. An unknown or forbidden model
# fails only its own column, so it is a row's error, not the comparison's.
FATAL = (AuthenticationError,)


def _values(name: str, value: Any, kind: type | tuple[type, ...]) -> list[Any]:
    """One value or a list of them, as a list; ``None`` means "the default" (one row)."""
    if value is None:
        return [None]
    if isinstance(value, str) or not isinstance(value, Iterable):
        values = [value]
    else:
        values = list(value)
    if not values:
        raise ValueError(f"{name}= is empty: give one value, a list of values, or leave it out")
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, kind)):
            raise TypeError(f"{name}= takes {'names' if kind is str else 'numbers'}, got {a_type(v)} ({v!r})")
    return list(dict.fromkeys(values))  # a value given twice is compared once


def combinations(
    models: Any, temperature: Any, seed: Any, *, default_model: str
) -> list[dict[str, Any]]:
    """Every (model, temperature, seed), in model, then temperature, then seed order."""
    model_list = _values("models", models, str) if models is not None else [default_model]
    temps = _values("temperature", temperature, (int, float))
    seeds = _values("seed", seed, int)
    return [
        {"model": m, "temperature": None if t is None else float(t), "seed": s}
        for m, t, s in itertools.product(model_list, temps, seeds)
    ]


def compare(
    prompt: str,
    *,
    models: str | Iterable[str] | None = None,
    temperature: float | Iterable[float] | None = None,
    seed: int | Iterable[int] | None = None,
    client: Client | None = None,
    progress: bool | str = False,
    limiter: RateLimiter | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Complete one prompt with every combination of ``models`` x ``temperature`` x ``seed``.

    Returns a DataFrame, one row per combination: model, temperature, seed, text,
    finish_reason, prompt/completion/total_tokens (Int64), latency_s, cost (Float64; NA when
    unpriced) and error ("" when the call succeeded). A failed combination (an unknown model,
    a 500) is its own row's error; the others still come back. All run at once, each one a
    ledger row with ``source="compare"``. ``**params`` (``max_tokens=...``) go to every call.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"compare takes one prompt (a string), not {a_type(prompt)}; for many use complete_many")
    for name in ("stream", "prompt", "model"):
        if name in params:
            hint = "models=[...]" if name == "model" else "leave it out"
            raise TypeError(f"compare sets {name}= itself; {hint}")
    if client is None:
        from ..client.client import Client

        client = Client()
    from .. import config

    combos = combinations(models, temperature, seed, default_model=str(config.get("model")))
    client.require_key()
    item_params = [{k: v for k, v in combo.items() if v is not None} for combo in combos]
    for extra in item_params:  # every combination's range checks, before anything is sent
        client.request_preview(prompt, **{**params, **extra}, stream=True)
    concurrency = min(len(combos), MAX_CONCURRENCY)
    rows: list[dict[str, Any] | None] = [None] * len(combos)
    run = Run(
        client,
        [prompt] * len(combos),
        list(range(len(combos))),
        rows,
        model=None,
        params=params,
        concurrency=concurrency,
        limiter=limiter or RateLimiter(concurrency=concurrency),
        source="compare",
        item_params=item_params,
        fatal=FATAL,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BatchInterruptedWarning)
        run.execute(make_progress(progress, len(combos)), on_row=None, done_before=0)
    for warning in caught:
        if issubclass(warning.category, BatchInterruptedWarning):  # complete_many's advice does not fit
            done = sum(row is not None and row.get("status") == "ok" for row in rows)
            warnings.warn(
                f"comparison interrupted: {done} of {len(combos)} combinations done, the rest marked "
                "cancelled; run it again for the whole table",
                BatchInterruptedWarning,
                stacklevel=2,
            )
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return compare_frame(combos, rows)


def compare_frame(combos: list[dict[str, Any]], rows: list[dict[str, Any] | None]) -> pd.DataFrame:
    filled = [row if row is not None else {"status": "cancelled", "error": "cancelled"} for row in rows]
    data: dict[str, Any] = {
        "model": [c["model"] for c in combos],
        "temperature": pd.array([c["temperature"] for c in combos], dtype="Float64"),
        "seed": pd.array([c["seed"] for c in combos], dtype="Int64"),
        "text": [row.get("text") for row in filled],
        "finish_reason": [row.get("finish_reason") for row in filled],
    }
    for col in ("prompt_tokens", "completion_tokens", "total_tokens"):
        data[col] = pd.array([row.get(col) for row in filled], dtype="Int64")
    data["latency_s"] = [float("nan") if row.get("latency_s") is None else row["latency_s"] for row in filled]
    # Each answered row carries the cost its ledger entry records: NA when unpriced (never 0), 0 for a replay.
    data["cost"] = pd.array([row.get("cost") for row in filled], dtype="Float64")
    data["error"] = [str(row.get("error") or "") for row in filled]
    return pd.DataFrame(data, columns=list(COLUMNS))


__all__ = ["COLUMNS", "combinations", "compare", "compare_frame"]
