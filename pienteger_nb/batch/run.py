"""Batches: ``complete_many`` over many prompts (its workers are in ``workers``).

Worker threads share one client (thread-safe, one HTTP session per thread) and one
``RateLimiter``, so a 429 pauses every worker and the ``x-ratelimit-remaining-*`` headers slow
the pace before 429s come. Every row is a ledger row with ``source="batch"``. It imports pandas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .budget import row_estimates, total
from .frame import COLUMNS, a_type, prompts_of, result_frame, take_resumed
from .pacing import RateLimiter
from .progress import make_progress
from .workers import BatchInterruptedWarning, Run, streams

if TYPE_CHECKING:  # pragma: no cover
    from ..client.client import Client
    from ..types import Estimate

def complete_many(
    prompts: Iterable[Any] | None,
    *,
    model: str | None = None,
    concurrency: int = 8,
    progress: bool | str = True,
    client: Client | None = None,
    resume: pd.DataFrame | None = None,
    rpm: float | None = None,
    on_row: Callable[[int, dict[str, Any]], Any] | None = None,
    limiter: RateLimiter | None = None,
    dry_run: bool = False,
    cache: bool | str | None = None,
    **params: Any,
) -> pd.DataFrame | Estimate:
    """Complete every prompt; returns a DataFrame aligned with the input, one row per prompt.

    ``prompts`` is a list, a Series (its index is kept) or any iterable of strings. Columns:
    prompt, text, finish_reason, prompt/completion/total_tokens (Int64), cost (Float64, USD as
    the row's ledger entry records it: NA when unpriced or unanswered, 0 when replayed), cached,
    usage_source, attempts, latency_s, status (``ok``/``error``/``cancelled``/``skipped``), error
    (``""`` when ok), request_id. A failed row never loses the others. A missing key or a bad parameter raises
    at once, before anything is sent; a wrong key, a forbidden or unknown model (401, 403,
    404) or a used-up quota raises at its first answer. ``**params`` go to every call
    (``max_tokens=...``). Rows are streamed (``best_of`` > 1 cannot be) and recorded in the
    usage ledger with ``source="batch"``.

    ``concurrency`` requests run at once; ``rpm`` is a known limit in requests per minute.
    ``progress``: a bar in a notebook, a line on stderr in a terminal; False for none.
    Interrupting (Ctrl-C, Interrupt Kernel) returns the rows finished so far, the rest
    ``cancelled``; ``resume=that_frame`` then does only the rows that are not ok.
    ``on_row(position, row)`` is called in the calling thread as each row finishes;
    a KeyboardInterrupt it raises interrupts the batch the same way. ``limiter`` shares a
    ``pacing.RateLimiter`` between batches run one after another (or gives tests its clock);
    give either it or ``rpm``. ``cache`` ("auto", True, False) overrides the client's replay
    setting: rows whose request has a stored answer are replayed, not sent.

    ``dry_run=True`` sends nothing and returns one ``Estimate`` summed over the rows to do.
    With a budget set (``set_budget``) a batch whose worst case does not fit is refused before
    it starts (``BudgetExceededError`` says how many rows would fit); one that reaches the limit
    while running marks the refused row and every later one ``skipped``, and ``resume=`` picks
    them up once the budget allows.
    """
    if "stream" in params:
        raise TypeError("complete_many chooses stream= itself (rows stream unless best_of > 1); leave it out")
    if "prompt" in params:
        raise TypeError("complete_many takes the prompts as its first argument, not prompt=")
    if on_row is not None and not callable(on_row):
        raise TypeError(f"on_row= must be a function (position, row), not {a_type(on_row)}")
    labels, items = prompts_of(prompts, resume)
    if limiter is not None and rpm is not None:
        raise ValueError("give rpm= or limiter=, not both (RateLimiter(rpm=...) takes the limit)")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    if client is None:
        from ..client.client import Client

        client = Client()
    if not dry_run:  # a dry run sends nothing: it needs no key
        client.require_key()
    if cache is not None:
        client = client.with_options(cache=cache)
    rows: list[dict[str, Any] | None] = [None] * len(items)
    if resume is not None:
        take_resumed(resume, labels, items, rows)
    todo = [i for i, row in enumerate(rows) if row is None]
    first = next((items[i] for i in todo if isinstance(items[i], str)), None)
    if first is not None:
        # Parameters are checked once here (ValueError naming the parameter), not once per row.
        client.request_preview(first, model=model, stream=streams(params), **params)
    if dry_run or todo:
        estimates = row_estimates(client, items, todo, model, params)
        if dry_run:
            return total(estimates, model or client.default_model)
        client.spend_policy.fits(estimates)  # refused up front: nothing sent
    if todo:
        run = Run(
            client,
            items,
            todo,
            rows,
            model=model,
            params=params,
            concurrency=concurrency,
            limiter=limiter or RateLimiter(rpm=rpm, concurrency=concurrency),
        )
        run.execute(make_progress(progress, len(items)), on_row=on_row, done_before=len(items) - len(todo))
    return result_frame(labels, items, rows)


__all__ = ["COLUMNS", "BatchInterruptedWarning", "complete_many"]
