"""Views of the usage ledger: summaries (with costs), a plain-text table, export, a plot."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .frame import Readable, When, read_frame

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

Prices = Mapping[str, float | Mapping[str, float]]
BY_CHOICES = ("model", "day", "source", "notebook", "cell", "user")
_NAN = float("nan")


def _price_table(prices: Prices) -> dict[str, tuple[float, float, float]]:
    """model -> (per 1K tokens, per 1K prompt tokens, per 1K completion tokens); NaN where unused."""
    if not isinstance(prices, Mapping):
        raise TypeError("prices must be a dict: model -> USD per 1K tokens, or {'prompt': x, 'completion': y}")
    table = {}
    for model, price in prices.items():
        try:
            if isinstance(price, Mapping):
                if set(price) != {"prompt", "completion"}:
                    raise ValueError("needs exactly the keys 'prompt' and 'completion'")
                entry = (_NAN, float(price["prompt"]), float(price["completion"]))
            else:
                entry = (float(price), _NAN, _NAN)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"price for {model!r}: {exc}; give USD per 1K tokens, or {{'prompt': x, 'completion': y}}"
            ) from None
        if any(v < 0 for v in entry):
            raise ValueError(f"price for {model!r} is negative")
        table[str(model)] = entry
    return table


def _groups(frame: pd.DataFrame, by: str) -> tuple[np.ndarray, pd.Index]:
    """A group number per row and the group labels (sorted)."""
    import numpy as np
    import pandas as pd

    if by == "day":
        days = frame["time"].dt.tz_localize(None).to_numpy().astype("datetime64[D]")  # the column is UTC
        labels, codes = np.unique(days, return_inverse=True)
        return codes.astype(np.intp), pd.Index([d.item() for d in labels], name="day", dtype=object)
    if by == "cell":  # (notebook, execution_count): a cell run outside a notebook has no count (-1)
        keys = pd.DataFrame({"notebook": frame["notebook"].fillna("").astype(str),
                             "execution_count": frame["execution_count"].fillna(-1).astype("int64")})
        codes, uniques = pd.MultiIndex.from_frame(keys).factorize(sort=True)
        index = pd.MultiIndex.from_tuples(list(uniques), names=["notebook", "execution_count"])
        return np.asarray(codes, dtype=np.intp), index
    if by in ("notebook", "user"):
        codes, uniques = pd.factorize(frame[by].fillna("").astype(str), sort=True)
        return np.asarray(codes, dtype=np.intp), pd.Index(list(uniques), name=by, dtype=object)
    column = frame[by].cat.remove_unused_categories()
    return column.cat.codes.to_numpy().astype(np.intp), pd.Index([str(c) for c in column.cat.categories], name=by)


def summarize(frame: pd.DataFrame, *, by: str = "model", prices: Prices | None = None) -> pd.DataFrame:
    """One row per group (see ``usage_summary()``) from a calls frame."""
    import numpy as np
    import pandas as pd

    if by not in BY_CHOICES:
        raise ValueError(f"by={by!r}: choose one of {', '.join(BY_CHOICES)}")
    table = _price_table(prices) if prices is not None else None
    codes, labels = _groups(frame, by)
    n = len(labels)
    status = frame["status"]

    def count(mask: Any) -> np.ndarray:
        return np.bincount(codes[np.asarray(mask, dtype=bool)], minlength=n)

    tokens = {
        name: frame[name].fillna(0).to_numpy(dtype=np.int64)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    out = pd.DataFrame(
        {
            "calls": np.bincount(codes, minlength=n),
            "errors": count(status == "error"),
            "cancelled": count(status == "cancelled"),
            **{name: np.bincount(codes, weights=v, minlength=n).astype(np.int64) for name, v in tokens.items()},
        },
        index=labels,
    )
    # Latency of answered calls: a cancelled stream lasts as long as the user let it.
    ok = (status == "ok").to_numpy(dtype=bool)
    latency = frame["latency_s"].to_numpy(dtype=float)[ok]
    ok_codes = codes[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean_latency_s"] = np.bincount(ok_codes, weights=latency, minlength=n) / np.bincount(ok_codes, minlength=n)
    out["p95_latency_s"] = (
        pd.Series(latency).groupby(ok_codes).quantile(0.95).reindex(range(n)).to_numpy()
    )
    if table is not None:
        models = frame["model"].cat.categories
        price = np.array([table.get(str(m), (_NAN, _NAN, _NAN)) for m in models] + [(_NAN,) * 3]).reshape(-1, 3)
        per_row = price[frame["model"].cat.codes.to_numpy()]  # code -1 takes the NaN row
        flat, per_prompt, per_completion = per_row[:, 0], per_row[:, 1], per_row[:, 2]
        split = tokens["prompt_tokens"] * per_prompt + tokens["completion_tokens"] * per_completion
        row_cost = np.where(np.isnan(flat), split, tokens["total_tokens"] * flat) / 1000.0
        # A call that used no tokens (a 404 for a mistyped model) costs nothing, price or not.
        spent = (tokens["prompt_tokens"] | tokens["completion_tokens"] | tokens["total_tokens"]) != 0
        row_cost[~spent] = 0.0
        if "cached" in frame:  # a replayed answer was free whatever the prices
            row_cost[frame["cached"].to_numpy(dtype=bool)] = 0.0
        # NaN sums to NaN: a group with tokens spent on an unpriced model has no known cost.
        out["cost"] = np.bincount(codes, weights=row_cost, minlength=n)
    elif "cost" in frame:  # the cost each row was recorded with (NA: unpriced then)
        spent = (tokens["prompt_tokens"] | tokens["completion_tokens"] | tokens["total_tokens"]) != 0
        row_cost = frame["cost"].to_numpy(dtype=float, na_value=_NAN)
        row_cost[~spent] = 0.0
        out["cost"] = np.bincount(codes, weights=row_cost, minlength=n)
    return out


def summarize_log(
    log: Readable, *, by: str = "model", since: When = None, until: When = None, prices: Prices | None = None
) -> pd.DataFrame:
    """``summarize()`` over a ledger, reading only the columns it needs."""
    if by not in BY_CHOICES:
        raise ValueError(f"by={by!r}: choose one of {', '.join(BY_CHOICES)}")
    needed = ["status", "prompt_tokens", "completion_tokens", "total_tokens", "latency_s"]
    needed += {"day": ["time"], "cell": ["notebook", "execution_count"]}.get(by, [by])
    if prices is not None and "model" not in needed:
        needed.append("model")
    needed.append("cost" if prices is None else "cached")
    read = getattr(log, "read_frame", None)  # the team ledger (PostgreSQL) reads its own way
    if read is not None:
        frame = read(since=since, until=until, columns=needed, text=False)
    else:
        frame = read_frame(log, since=since, until=until, columns=needed, text=False)
    return summarize(frame, by=by, prices=prices)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def format_summary(summary: pd.DataFrame, *, ledger: str = "", since: When = None) -> str:
    """A summary as a plain-text table with a total line."""
    where = f" (ledger: {ledger})" if ledger else ""
    if summary.empty:
        span = f" since {since}" if since is not None else ""
        return f"No calls recorded{span}{where}."
    shown = summary.reset_index().astype(object)
    for column in ("mean_latency_s", "p95_latency_s"):
        shown[column] = [("-" if math.isnan(v) else f"{v:.3f}") for v in summary[column]]
    if "cost" in summary:
        shown["cost"] = [("unpriced" if math.isnan(v) else f"${v:,.4f}") for v in summary["cost"]]
    table = shown.to_string(index=False)
    calls, tokens = int(summary["calls"].sum()), int(summary["total_tokens"].sum())
    errors, cancelled = int(summary["errors"].sum()), int(summary["cancelled"].sum())
    span = f" since {since}" if since is not None else ""
    total = (
        f"{_plural(calls, 'call')}{span}, {tokens:,} tokens, {_plural(errors, 'error')}, "
        f"{cancelled} cancelled{where}"
    )
    return f"{table}\n\n{total}"


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a frame as CSV, or parquet when the name ends in ``.parquet``; returns the path."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                "writing .parquet needs pyarrow: pip install pyarrow (or export to a .csv file)"
            ) from None
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return target


def plot_frame(frame: pd.DataFrame, *, freq: str | None = None, ax: Any = None) -> Any:
    """Tokens per period by model as a line chart; returns the matplotlib Axes.

    ``freq`` is a fixed pandas frequency ("15min", "h", "D", "7D"); by default hours, days or
    weeks, whichever suits the span of the data.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting usage needs matplotlib: pip install matplotlib") from None
    import pandas as pd

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    if frame.empty:
        ax.set_title("Tokens by model: no calls recorded yet")
        return ax
    if freq is None:
        span = frame["time"].max() - frame["time"].min()
        freq = "h" if span <= pd.Timedelta(days=3) else "D" if span <= pd.Timedelta(days=120) else "7D"
    label = {"h": "hour", "D": "day", "7D": "week"}.get(freq, freq)
    tokens = (
        frame["total_tokens"].fillna(0)
        .groupby([frame["time"].dt.floor(freq), frame["model"]], observed=True).sum()
        .unstack(fill_value=0)
        .astype("int64")
    )
    for model in tokens.columns:
        ax.plot(tokens.index, tokens[model], marker="o", label=str(model))
    ax.set_title(f"Tokens per {label} by model")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("tokens")
    ax.legend(title="model")
    ax.figure.autofmt_xdate()
    return ax
