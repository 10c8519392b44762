"""The ``pienteger`` accessor: ``df.pienteger.complete(template, out=...)`` and ``s.pienteger``.

Registered when ``pienteger_nb.batch`` is imported (``pienteger_nb.complete_many`` does that).
A template is filled per row with the same safe interpolation as the ``%%pienteger`` magic:
``{column}`` (and ``{column[0]}``, ``{column:.2f}``) only, never attribute access or
expressions; unknown names and other braces stay as typed, ``{{``/``}}`` are literal braces.
"""

from __future__ import annotations

import difflib
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..interpolate import interpolate
from ..types import Estimate
from .run import complete_many

# A field's leading name, as the interpolation reads it (for the "no such column" warning).
_NAMES = re.compile(r"(?<!\{)\{([A-Za-z_]\w*)(?=[\[!:}])")


def fill(template: str, frame: pd.DataFrame) -> pd.Series:
    """One prompt per row of ``frame``: ``template`` filled from that row's columns (index kept).

    A row with NA in a column the template uses gets None: it is not sent.
    """
    if not isinstance(template, str):
        raise TypeError(
            f"template must be a string such as 'Summarise: {{review}}', got {type(template).__name__}"
        )
    columns = [c for c in frame.columns if isinstance(c, str)]
    used = set(_NAMES.findall(template))
    unknown = sorted(used - set(columns))
    for name in unknown:
        near = difflib.get_close_matches(name, columns, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        warnings.warn(f"template field {{{name}}} names no column{hint}; it is sent as typed", stacklevel=3)
    wanted = [c for c in columns if c in used]
    if not wanted:
        return pd.Series([interpolate(template, {})] * len(frame), index=frame.index, dtype=object)
    values = frame[wanted].to_dict(orient="records")
    # A row missing a value it needs gets no prompt (so it is not sent), not "Summarise: nan".
    gaps = frame[wanted].isna().any(axis=1).tolist()
    prompts = [None if gap else interpolate(template, row) for row, gap in zip(values, gaps, strict=True)]
    return pd.Series(prompts, index=frame.index, dtype=object)


@pd.api.extensions.register_dataframe_accessor("pienteger")
class FrameAccessor:
    """``df.pienteger``: complete a prompt template over every row."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def prompts(self, template: str) -> pd.Series:
        """The prompts ``complete`` would send (a Series on the frame's index); sends nothing."""
        return fill(template, self._frame)

    def estimate(self, template: str, **kwargs: Any) -> Estimate:
        """What ``complete(template, **kwargs)`` would cost at most, summed over the rows; sends nothing."""
        if "dry_run" in kwargs:
            raise TypeError("estimate() is the dry run; leave dry_run= out")
        estimate = complete_many(fill(template, self._frame), dry_run=True, progress=False, **kwargs)
        assert isinstance(estimate, Estimate)
        return estimate

    def complete(
        self,
        template: str,
        *,
        out: str = "completion",
        tokens: bool = False,
        resume: bool = False,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """A copy of the frame with column ``out`` holding each row's completion.

        ``template`` is filled from each row's columns (``"Summarise: {review}"``). The frame
        itself is not changed. Failed rows get NA in ``out``; when any row failed an
        ``{out}_error`` column says why. A row with NA in a column the template uses is not
        sent (its error names the column). ``tokens=True`` adds ``{out}_prompt_tokens``,
        ``{out}_completion_tokens`` and ``{out}_total_tokens``. ``resume=True`` redoes only
        rows whose ``out`` is NA (after an interrupt). Other keywords go to ``complete_many``
        (``model``, ``concurrency``, ``progress``, ``max_tokens``, ...).
        """
        if not isinstance(out, str) or not out:
            raise ValueError("out= must be a column name (a non-empty string)")
        if "resume" in kwargs or "prompts" in kwargs:
            raise TypeError("pass resume=True to redo the rows whose output is missing")
        prompts = fill(template, self._frame)
        result = self._frame.copy()
        redo = np.ones(len(result), dtype=bool)
        if resume and out in result.columns:
            redo = result[out].isna().to_numpy(dtype=bool)
            if not redo.any():
                return result
        batch = complete_many(prompts[redo], **kwargs)
        assert isinstance(batch, pd.DataFrame), "use .estimate(template) for a dry run"
        # By position, not label: an index may repeat labels (pd.concat), and .loc would misalign.
        rows = np.flatnonzero(redo)

        def put(name: str, values: Any, empty: Any, dtype: str | None = None) -> None:
            if name in result.columns:
                column = result[name].to_numpy(dtype=object, copy=True)
            else:
                column = np.full(len(result), empty, dtype=object)
            column[rows] = np.asarray(values, dtype=object)
            result[name] = pd.array(column, dtype=dtype) if dtype else column

        ok = batch["status"] == "ok"
        put(out, batch["text"].where(ok, None), None)
        err_col = f"{out}_error"
        if (~ok).any() or err_col in result.columns:
            put(err_col, self._unsent_reasons(template, batch["error"], prompts.isna().to_numpy()[rows], rows), "")
        if tokens:
            for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                put(f"{out}_{name}", batch[name], pd.NA, "Int64")
        return result

    def _unsent_reasons(self, template: str, errors: pd.Series, unsent: Any, rows: Any) -> Any:
        """The batch's errors, with the NA columns named for the rows that were not sent."""
        errors = errors.to_numpy(dtype=object, copy=True)
        if unsent.any():
            fields = set(_NAMES.findall(template))
            used = [c for c in self._frame.columns if isinstance(c, str) and c in fields]
            for i, gaps in zip(np.flatnonzero(unsent), self._frame.iloc[rows[unsent]][used].isna().to_numpy()):
                names = [c for c, gap in zip(used, gaps, strict=True) if gap]
                verb = "is" if len(names) == 1 else "are"
                errors[i] = f"ValueError: {', '.join(names)} {verb} NA in this row, so it was not sent"
        return errors


@pd.api.extensions.register_series_accessor("pienteger")
class SeriesAccessor:
    """``s.pienteger``: complete each value (or a template around it)."""

    def __init__(self, series: pd.Series):
        self._series = series

    def complete(self, template: str | None = None, **kwargs: Any) -> pd.Series:
        """A Series of completions on the same index, named after this one.

        Without ``template`` each value is the prompt; with one, ``{value}`` (or the
        Series' name, ``{review}``) stands for the value. Failed rows are NA. Keywords go to
        ``complete_many``; use ``complete_many(s)`` itself for every column of the result.
        """
        if template is None:
            prompts = self._series
        else:
            frame = pd.DataFrame({"value": self._series})
            if isinstance(self._series.name, str) and self._series.name != "value":
                frame[self._series.name] = self._series
            prompts = fill(template, frame)
        batch = complete_many(prompts, **kwargs)
        assert isinstance(batch, pd.DataFrame), "use df.pienteger.estimate(template) for a dry run"
        text = batch["text"].where(batch["status"] == "ok", None).astype(object)
        return text.rename(self._series.name)


__all__ = ["FrameAccessor", "SeriesAccessor", "fill"]
