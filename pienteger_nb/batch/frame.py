"""The frame a batch returns: its columns, a row per outcome, and resuming from an earlier one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..ledger.prices import completion_cost

if TYPE_CHECKING:  # pragma: no cover
    from ..types import Completion

COLUMNS = (
    "prompt",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "cached",
    "usage_source",
    "attempts",
    "latency_s",
    "status",
    "error",
    "request_id",
)
_INT_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens", "attempts")


def ok_row(c: Completion) -> dict[str, Any]:
    u = c.usage
    return {
        "text": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        # As the row's ledger entry records it: 0 for a replay, None (NA) when unpriced.
        "cost": completion_cost(c),
        "cached": c.cached,
        "usage_source": u.source,
        "attempts": c.attempts,
        "latency_s": c.latency_s,
        "status": "ok",
        "error": "",
        "request_id": c.request_id,
    }


def failed_row(
    status: str, error: str, *, latency: float | None = None, request_id: str | None = None
) -> dict[str, Any]:
    return {"status": status, "error": error, "latency_s": latency, "request_id": request_id}


def is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def a_type(value: Any) -> str:
    """``"an int"``, ``"a list"``: the value's type with its article, for messages."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def prompts_of(prompts: Iterable[Any] | None, resume: pd.DataFrame | None) -> tuple[pd.Index, list[Any]]:
    """The labels (a Series keeps its index) and the prompts as a list."""
    if resume is not None and not isinstance(resume, pd.DataFrame):
        raise TypeError(f"resume= takes the DataFrame an earlier complete_many returned, not {a_type(resume)}")
    if prompts is None:
        if resume is None:
            raise TypeError("complete_many needs prompts (or resume=a previous result)")
        prompts = resume["prompt"]
    if isinstance(prompts, str):
        raise TypeError("complete_many takes many prompts: pass a list of strings, not one string")
    if isinstance(prompts, pd.DataFrame):
        raise TypeError(
            "pass a Series or a list of prompts; for a DataFrame use df.pienteger.complete(template)"
        )
    if isinstance(prompts, pd.Series):
        return prompts.index, prompts.tolist()
    if not isinstance(prompts, Iterable):
        raise TypeError(f"prompts must be a list or Series of strings, got {a_type(prompts)}")
    items = list(prompts)
    return pd.RangeIndex(len(items)), items


def take_resumed(
    resume: pd.DataFrame, labels: pd.Index, items: list[Any], rows: list[dict[str, Any] | None]
) -> None:
    """Copy the ok rows of a previous result into ``rows``; refuse a frame of other prompts."""
    missing = [c for c in ("prompt", "status") if c not in resume.columns]
    if missing:
        raise ValueError(f"resume= takes a frame returned by complete_many (it lacks {', '.join(missing)})")
    if len(resume) != len(items) or not resume.index.equals(labels):
        raise ValueError(
            f"resume= frame has {len(resume)} rows and a different index; pass the same prompts "
            "as the interrupted run (or prompts=None to take them from the frame)"
        )
    status = resume["status"].tolist()
    previous = resume["prompt"].tolist()
    for pos, (st, old, new) in enumerate(zip(status, previous, items)):
        if st == "ok" and old == new:
            record = resume.iloc[pos]
            rows[pos] = {c: _none_if_na(record[c]) for c in COLUMNS if c in resume.columns and c != "prompt"}


def _none_if_na(value: Any) -> Any:
    return None if is_na(value) else value


def result_frame(labels: pd.Index, items: list[Any], rows: list[dict[str, Any] | None]) -> pd.DataFrame:
    cancelled = {"status": "cancelled", "error": "cancelled"}
    filled = [row if row is not None else cancelled for row in rows]
    data: dict[str, Any] = {"prompt": items}
    for col in COLUMNS[1:]:
        data[col] = [row.get(col) for row in filled]
    frame = pd.DataFrame(data, index=labels)
    for col in _INT_COLUMNS:
        frame[col] = pd.array(frame[col].tolist(), dtype="Int64")
    frame["latency_s"] = frame["latency_s"].astype("float64")
    frame["cost"] = pd.array(frame["cost"].tolist(), dtype="Float64")
    frame["cached"] = pd.Series([bool(v) for v in frame["cached"].tolist()], index=frame.index, dtype=bool)
    statuses = ["ok", "error", "cancelled"]
    if (frame["status"] == "skipped").any():  # only a budget that ran out mid-run skips rows
        statuses.append("skipped")
    frame["status"] = pd.Categorical(frame["status"], categories=statuses)
    frame["error"] = frame["error"].fillna("").astype(str)
    from .table_html import mark  # the text columns readable in a notebook, not squeezed

    return mark(frame)


__all__ = ["COLUMNS", "a_type", "failed_row", "is_na", "ok_row", "prompts_of", "result_frame", "take_resumed"]
