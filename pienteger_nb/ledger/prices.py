"""Prices: USD per 1,000 tokens for each model, and the cost of a call under them.

The table in force is the one given to ``set_prices`` in this kernel, else the JSON file named
by the ``prices`` setting (``%pienteger config prices=FILE`` or ``PIENTEGER_PRICES``), else
empty. A model the table lacks is unpriced: its cost is None (NA in frames), never 0.

A bad table or file is refused with one line naming the model and the field; the table in
force before it stays. ``cost_usd`` is pure arithmetic on a cached table: the ledger calls it
for every row it records.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import config

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..types import Completion

# model -> (USD per 1K prompt tokens, USD per 1K completion tokens)
PriceTable = dict[str, tuple[float, float]]

_lock = threading.Lock()
_explicit: PriceTable | None = None  # set_prices(...) in this kernel
_file_cache: tuple[str, int, PriceTable] | None = None  # (path, mtime_ns, table) of the last good file
_warned: set[tuple[str, int]] = set()

_SHAPE = "give a number, a (prompt, completion) pair or {\"prompt\": p, \"completion\": c}"


def _price(model: str, field: str, value: Any, per: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # ValueError for every fault of a table: it comes from a file as often as from code.
        raise ValueError(f"price for {model!r}: {field} is {value!r}, not a number; {_SHAPE}")  # noqa: TRY004
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"price for {model!r}: {field} is {value!r}, not a number; {_SHAPE}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"price for {model!r}: {field} is {value!r}; it must be a finite number >= 0")
    return number * 1000.0 / per


def parse_table(table: Mapping[str, Any], *, per: float = 1000) -> PriceTable:
    """The checked table (USD per 1K tokens); ValueError naming the model and field at the first fault."""
    if isinstance(per, bool) or not isinstance(per, int | float) or not per > 0 or not math.isfinite(per):
        raise ValueError(f"per={per!r}: give the number of tokens the prices are for, e.g. per=1000")
    if not isinstance(table, Mapping):
        raise ValueError(f"prices must map a model name to its price, got {type(table).__name__}; {_SHAPE}")  # noqa: TRY004
    parsed: PriceTable = {}
    for model, price in table.items():
        if not isinstance(model, str) or not model:
            raise ValueError(f"price table key {model!r} is not a model name")
        if isinstance(price, Mapping):
            if set(price) != {"prompt", "completion"}:
                raise ValueError(f"price for {model!r}: needs exactly the keys 'prompt' and 'completion', "
                                 f"got {sorted(map(str, price))}")
            pair = (_price(model, "prompt", price["prompt"], per),
                    _price(model, "completion", price["completion"], per))
        elif isinstance(price, list | tuple):
            if len(price) != 2:
                raise ValueError(f"price for {model!r}: a pair needs 2 numbers, got {len(price)}; {_SHAPE}")
            pair = (_price(model, "prompt", price[0], per), _price(model, "completion", price[1], per))
        else:
            one = _price(model, "price", price, per)
            pair = (one, one)
        parsed[model] = pair
    return parsed


def read_file(path: str | os.PathLike[str]) -> PriceTable:
    """The checked table in a JSON file (USD per 1K tokens); ValueError in one line when it is bad."""
    where = os.path.expanduser(os.fspath(path))
    try:
        with open(where, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read the price file {where}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"the price file {where} is not valid JSON ({exc})") from None
    try:
        return parse_table(data)
    except ValueError as exc:
        raise ValueError(f"the price file {where}: {exc}") from None


def set_prices(table: Mapping[str, Any] | None, *, per: float = 1000) -> None:
    """Use ``table`` (model -> USD per ``per`` tokens) in this kernel; None goes back to the file.

    A price is one number (prompt and completion alike), a ``(prompt, completion)`` pair or
    ``{"prompt": p, "completion": c}``. A bad entry raises ValueError and changes nothing.
    Rows already recorded keep the cost they were recorded with.
    """
    global _explicit
    parsed = None if table is None else parse_table(table, per=per)
    with _lock:
        _explicit = parsed


def _from_file() -> PriceTable:
    global _file_cache
    try:
        path = config.get("prices")
    except Exception as exc:  # noqa: BLE001 - a bad PIENTEGER_PRICES must not stop a call being recorded
        _warn_once(str(exc), ("setting", 0))
        return _file_cache[2] if _file_cache else {}
    if not path:
        return {}
    where = os.path.expanduser(str(path))
    try:
        mtime = os.stat(where).st_mtime_ns
    except OSError:
        mtime = -1
    cached = _file_cache
    if cached is not None and cached[0] == where and cached[1] == mtime:
        return cached[2]
    try:
        table = read_file(where)
    except ValueError as exc:
        # The previous table stays in force; say so once per version of the file.
        _warn_once(f"{exc}; the previous price table stays in force", (where, mtime))
        return cached[2] if cached is not None else {}
    _file_cache = (where, mtime, table)
    return table


def _warn_once(message: str, key: tuple[str, int]) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def table_in_force() -> PriceTable:
    """model -> (USD per 1K prompt tokens, per 1K completion tokens) now."""
    explicit = _explicit
    return explicit if explicit is not None else _from_file()


def cost_usd(model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """USD for a call's tokens under the prices in force; None when the model is unpriced."""
    price = table_in_force().get(model)
    if price is None:
        return None
    return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1000.0


def completion_cost(completion: Completion) -> float | None:
    """What a finished call cost in USD, as its ledger row says: 0 for a replay, None when unpriced.

    Priced by the model asked for (the ledger's ``model``), not the name the service answered with.
    """
    if completion.cached:
        return 0.0
    u = completion.usage
    return cost_usd(completion.requested_model or completion.model, u.prompt_tokens, u.completion_tokens)


def format_usd(usd: float | None) -> str:
    """``$0.0123``, ``$0.000042``; "unpriced" for None or NA (never a made-up 0)."""
    if usd is None or math.isnan(usd):
        return "unpriced"
    if usd == 0:
        return "$0"
    return f"${usd:.4f}" if usd >= 0.01 else f"${usd:.6f}".rstrip("0")


def prices() -> pd.DataFrame:
    """The table in force: index ``model``, columns ``prompt`` and ``completion`` (USD per 1K tokens)."""
    import pandas as pd

    table = table_in_force()
    models = sorted(table)
    frame = pd.DataFrame(
        {"prompt": [table[m][0] for m in models], "completion": [table[m][1] for m in models]},
        index=pd.Index(models, name="model", dtype=object), dtype=float,
    )
    return frame


def describe_cost(cost: float | None) -> str:
    """``$0.0012`` or ``unpriced``: how every view shows a cost."""
    return "unpriced" if cost is None or math.isnan(cost) else f"${cost:,.4f}"


__all__ = ["PriceTable", "completion_cost", "cost_usd", "describe_cost", "format_usd", "parse_table", "prices",
           "read_file", "set_prices", "table_in_force"]
