"""Reading the usage ledger into a pandas DataFrame, fast, with the contract's dtypes.

The frame is built without a Python object per cell: for each chunk of rows SQLite joins a
column's values into one string (``group_concat``, or ``json_group_array`` for free text) and
numpy parses it in C. The category-like columns (and ``stream``) travel as small codes packed
into one integer per row, decoded with shifts and masks; the categories themselves come from
the ``labels`` table that writers keep, so no table scan is needed to find them. For 10^6
rows this is about twice as fast as ``cursor.fetchall()`` or ``pd.read_sql`` before those
even fix the dtypes (``benchmarks/usage.py``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .schema import BUSY_TIMEOUT_S, LABEL_SQL, LABELLED, MEMORY, time_to_us

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

When = _dt.datetime | _dt.date | _dt.timedelta | str | None


class Readable(Protocol):
    """What a frame is read from: a ledger's path and a read-only connection (``UsageLog``)."""

    path: str

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

# Stands for SQL NULL in integer columns on their way through text; no real value is this.
_NULL = -(2**63)
# Ids per query: keeps each joined string far below SQLite's 1 GB string limit.
_CHUNK = 200_000
# Connections reading windows at once (file ledgers; at most one per CPU).
_MAX_READERS = 4
# Categories beyond this many are decoded by pandas from text instead of packed codes.
_MAX_PACKED = 62
# Shown as categories even before any row has them, so value_counts() lists them all.
_KNOWN = {
    "status": ("ok", "error", "cancelled"),
    "usage_source": ("reported", "estimated"),
    "source": ("magic", "form", "client", "batch"),
}


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # time | cat | labelled_str | str | int | bool | seconds | float


COLUMNS = (
    _Column("time", "time"),
    _Column("source", "cat"),
    _Column("model", "cat"),
    _Column("status", "cat"),
    _Column("error", "str"),
    _Column("http_status", "int"),
    _Column("stream", "bool"),
    _Column("prompt_tokens", "int"),
    _Column("completion_tokens", "int"),
    _Column("total_tokens", "int"),
    _Column("usage_source", "cat"),
    _Column("latency_s", "seconds"),
    _Column("ttft_s", "seconds"),
    _Column("finish_reason", "labelled_str"),  # a string column, but few values: read as codes
    _Column("attempts", "int"),
    _Column("request_id", "str"),
    _Column("endpoint", "cat"),
    _Column("execution_count", "int"),
    _Column("cost", "float"),
    _Column("cached", "bool"),
    _Column("notebook", "labelled_str"),
    _Column("user", "labelled_str"),
)
_BY_NAME = {c.name: c for c in COLUMNS}
_CODED = ("cat", "labelled_str")

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(value: When, *, name: str = "since", now: _dt.datetime | None = None) -> int | None:
    """Microseconds since the epoch for a ``since``/``until`` value (see ``usage()``), or None."""
    if value is None:
        return None
    now = now or _dt.datetime.now(_dt.UTC)
    if isinstance(value, _dt.timedelta):
        return time_to_us(now - value)
    if isinstance(value, _dt.datetime) and value == value:  # noqa: PLR0124 (pandas Timestamps too; NaT != NaT)
        return time_to_us(value)
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return time_to_us(_dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        match = _RELATIVE.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
            try:
                return time_to_us(now - _dt.timedelta(seconds=seconds))
            except OverflowError:  # further back than datetime reaches: from the beginning
                return time_to_us(_dt.datetime(1, 1, 1, tzinfo=_dt.UTC))
        try:
            return time_to_us(_dt.datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise ValueError(
        f"{name}={value!r} is not a time: use a datetime, an ISO date such as 2026-11-01 or "
        "2026-11-01T09:30, or a span back from now such as 30m, 1h, 7d"
    )


def _names(value: str | Iterable[str] | None, *, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"{name}= takes a name or a list of names, got {value!r}")
    return [str(v) for v in value]


def where_clause(since: When, until: When, model: Any, source: Any) -> tuple[str, list[Any]]:
    """SQL condition and parameters for a selection of calls."""
    clauses: list[str] = ["1"]
    params: list[Any] = []
    start, end = parse_when(since, name="since"), parse_when(until, name="until")
    if start is not None:
        clauses.append("time_us >= ?")
        params.append(start)
    if end is not None:
        clauses.append("time_us < ?")
        params.append(end)
    for column, value in (("model", _names(model, name="model")), ("source", _names(source, name="source"))):
        if value is not None:
            clauses.append(f"{column} IN ({', '.join('?' * len(value))})")
            params.extend(value)
    return " AND ".join(clauses), params


class _UnlabelledValue(Exception):
    """A row holds a value missing from `labels` (written by a writer that does not keep it)."""


def _labels(conn: sqlite3.Connection) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {name: set() for name in LABELLED}
    for name, value in conn.execute("SELECT name, value FROM labels"):
        found.setdefault(name, set()).add(value)
    return {n: list(_KNOWN.get(n, ())) + sorted(found[n].difference(_KNOWN.get(n, ()))) for n in LABELLED}


def _scanned_labels(conn: sqlite3.Connection, where: str, params: list[Any]) -> dict[str, list[str]]:
    found = {n: set(_KNOWN.get(n, ())) for n in LABELLED}
    for name in LABELLED:
        for (value,) in conn.execute(f"SELECT DISTINCT {name} FROM calls WHERE {where}", params):
            if value is not None:
                found[name].add(value)
    return {n: list(_KNOWN.get(n, ())) + sorted(found[n].difference(_KNOWN.get(n, ()))) for n in LABELLED}


@dataclass
class _Packed:
    """Where each coded column sits in the packed integer: its shift and bit width."""

    fields: list[tuple[_Column, int, int]]

    def sql(self, cats: dict[str, list[str]]) -> tuple[str, list[Any]]:
        parts, params = [], []
        for column, shift, _ in self.fields:
            if column.kind == "bool":
                parts.append(f"({column.name} << {shift})")
                continue
            values = cats[column.name]
            n = len(values)
            # 0..n-1: a category; n: NULL; n+1: a value missing from labels.
            other = f"CASE WHEN {column.name} IS NULL THEN {n} ELSE {n + 1} END"
            if n:
                whens = " ".join(f"WHEN ? THEN {i}" for i in range(n))
                other = f"CASE {column.name} {whens} ELSE {other} END"
            parts.append(f"(({other}) << {shift})")
            params.extend(values)
        return "group_concat(" + " | ".join(parts) + ")", params


def _layout(columns: list[_Column], cats: dict[str, list[str]]) -> _Packed:
    fields, shift = [], 0
    for column in columns:
        if column.kind == "bool" or (column.kind in _CODED and len(cats[column.name]) <= _MAX_PACKED):
            width = 1 if column.kind == "bool" else (len(cats[column.name]) + 1).bit_length()
            fields.append((column, shift, width))
            shift += width
    return _Packed(fields)


def _aggregate(column: _Column) -> str:
    """The SQL aggregate that turns one column of a chunk into one string."""
    if column.kind in ("str", *_CODED):  # (coded columns only land here with too many values)
        return f"json_group_array({column.name})"
    if column.kind == "float":  # NULL (unpriced) travels as nan and comes back as NA
        # %!.17g round-trips a double exactly (group_concat's own text keeps only 15 digits)
        return f"group_concat(CASE WHEN {column.name} IS NULL THEN 'nan' ELSE printf('%!.17g', {column.name}) END)"
    if column.kind == "seconds":  # to the microsecond: integers parse several times faster than floats
        return f"group_concat(ifnull(CAST(round({column.name} * 1e6) AS INTEGER), {_NULL}))"
    name = "time_us" if column.kind == "time" else column.name
    return f"group_concat(ifnull({name}, {_NULL}))"


def _parse_ints(text: str | None, count: int, dtype: Any = None) -> np.ndarray:
    import numpy as np

    values = np.fromstring(text or "", dtype=dtype or np.int64, sep=",")
    if len(values) != count:  # pragma: no cover - would mean a malformed value in the file
        raise ValueError(f"the usage ledger returned {len(values)} values for {count} rows")
    return values


def _fetch_chunks(
    conn: sqlite3.Connection, sql: str, windows: list[list[Any]], path: str | None
) -> list[tuple[Any, ...]]:
    """One aggregate row per id window (its parameters), in order.

    For a file, several windows are read at once on their own connections: SQLite builds the
    strings without holding the GIL. The table is append-only and every window stops at the
    same last id, so their snapshots agree.
    """
    workers = min(len(windows), os.cpu_count() or 1, _MAX_READERS)
    if path is None or workers <= 1:
        return [conn.execute(sql, window).fetchone() for window in windows]
    file = path

    def read(group: list[list[Any]]) -> list[tuple[Any, ...]]:
        own = sqlite3.connect(file, timeout=BUSY_TIMEOUT_S)
        try:
            return [own.execute(sql, window).fetchone() for window in group]
        finally:
            own.close()

    with ThreadPoolExecutor(workers, thread_name_prefix="pienteger-usage-read") as pool:
        groups = list(pool.map(read, [windows[i::workers] for i in range(workers)]))
    rows: list[tuple[Any, ...]] = [()] * len(windows)
    for i, group in enumerate(groups):
        rows[i::workers] = group
    return rows


def _read_pass(
    conn: sqlite3.Connection, columns: list[_Column], where: str, params: list[Any],
    cats: dict[str, list[str]], with_ids: bool, path: str | None,
) -> tuple[dict[str, Any], int]:
    import numpy as np

    packed = _layout(columns, cats)
    in_packed = {c.name for c, _, _ in packed.fields}
    rest = [c for c in columns if c.name not in in_packed]
    select: list[str] = ["count(*)"]
    select_params: list[Any] = []
    if packed.fields:
        sql, select_params = packed.sql(cats)
        select.append(sql)
    select += [_aggregate(c) for c in rest]
    if with_ids:
        select.append("group_concat(id)")
    low, high = conn.execute(f"SELECT min(id), max(id) FROM calls WHERE {where}", params).fetchone()
    sql = f"SELECT {', '.join(select)} FROM calls WHERE {where} AND id >= ? AND id < ? AND id <= ?"
    starts = list(range(low, high + 1, _CHUNK)) if low is not None else []
    windows = [[*select_params, *params, start, start + _CHUNK, high] for start in starts]
    rows = _fetch_chunks(conn, sql, windows, path)
    parts: dict[str, list[Any]] = {name: [] for name in ["_packed", "_id", *(c.name for c in rest)]}
    total = 0
    for row in rows:
        count = row[0]
        if not count:
            continue
        total += count
        values = list(row[1:])
        if packed.fields:
            parts["_packed"].append(_parse_ints(values.pop(0), count))
        for column in rest:
            text = values.pop(0)
            if column.kind in ("str", *_CODED):
                parts[column.name].extend(json.loads(text))
            else:
                parts[column.name].append(_parse_ints(text, count, np.float64 if column.kind == "float" else None))
        if with_ids:
            parts["_id"].append(_parse_ints(values.pop(0), count))

    def joined(chunks: list[Any]) -> np.ndarray:
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)

    raw: dict[str, Any] = {}
    word = joined(parts["_packed"])
    for column, shift, width in packed.fields:
        codes = (word >> shift) & ((1 << width) - 1)
        if column.kind == "bool":
            raw[column.name] = codes.astype(bool)
            continue
        n = len(cats[column.name])
        if (codes > n).any():
            raise _UnlabelledValue(column.name)
        raw[column.name] = np.where(codes == n, -1, codes)
    for column in rest:
        raw[column.name] = parts[column.name] if column.kind in ("str", *_CODED) else joined(parts[column.name])
    if with_ids:
        raw["_id"] = joined(parts["_id"])
    return raw, total


def _series(column: _Column, values: Any, cats: list[str] | None) -> Any:
    import numpy as np
    import pandas as pd

    if column.kind == "time":
        return pd.DatetimeIndex(values.view("datetime64[us]")).tz_localize("UTC").as_unit("ns")
    if column.kind in _CODED:
        assert cats is not None
        if not isinstance(values, np.ndarray):  # too many values to pack: text from JSON
            categorical = pd.Categorical(values, categories=cats)
            if ((categorical.codes == -1) & pd.notna(np.asarray(values, dtype=object))).any():
                raise _UnlabelledValue(column.name)
            values = categorical.codes
        if column.kind == "labelled_str":
            lookup = np.array([*cats, None], dtype=object)  # code -1 picks the None
            return pd.array(lookup[values], dtype="string")
        # Keep the known categories and those present; drop labels only other rows use.
        used = np.bincount(values[values >= 0], minlength=len(cats)) > 0
        keep = [i for i, c in enumerate(cats) if used[i] or c in _KNOWN.get(column.name, ())]
        remap = np.full(len(cats) + 1, -1, dtype=np.int16)
        remap[keep] = np.arange(len(keep))
        return pd.Categorical.from_codes(remap[values], categories=[cats[i] for i in keep])
    if column.kind == "str":
        return pd.array(values, dtype="string")
    if column.kind == "int":
        missing = values == _NULL
        return pd.arrays.IntegerArray(np.where(missing, 0, values), missing)
    if column.kind == "bool":
        return values
    if column.kind == "float":
        missing = np.isnan(values)
        return pd.arrays.FloatingArray(np.where(missing, 0.0, values), missing)
    seconds = values / 1e6
    seconds[values == _NULL] = np.nan
    return seconds


def _build(
    conn: sqlite3.Connection, columns: list[_Column], where: str, params: list[Any],
    cats: dict[str, list[str]], with_ids: bool, path: str | None,
) -> tuple[dict[str, Any], int, dict[str, Any]]:
    raw, total = _read_pass(conn, columns, where, params, cats, with_ids, path)
    return raw, total, {c.name: _series(c, raw[c.name], cats.get(c.name)) for c in columns}


def read_frame(
    log: Readable, *, since: When = None, until: When = None, model: Any = None, source: Any = None,
    columns: Iterable[str] | None = None, text: bool | None = None,
) -> pd.DataFrame:
    """The selected calls as a DataFrame, sorted by time (see ``usage()``).

    ``columns`` limits the contract columns read (summaries need few); ``text`` adds the
    prompt and text columns (None: when any selected row stored them).
    """
    import numpy as np
    import pandas as pd

    wanted = [_BY_NAME[n] for n in columns] if columns is not None else list(COLUMNS)
    where, params = where_clause(since, until, model, source)
    path = None if log.path == MEMORY else log.path
    with log.reading() as conn:
        conn.execute("BEGIN")  # one snapshot for every query below
        try:
            if text is None:
                text = bool(conn.execute(
                    "SELECT EXISTS(SELECT 1 FROM calls WHERE (prompt IS NOT NULL OR text IS NOT NULL) "
                    f"AND {where})", params,
                ).fetchone()[0])
            scanned: dict[str, list[str]] = {}
            try:
                raw, total, data = _build(conn, wanted, where, params, _labels(conn), bool(text), path)
            except _UnlabelledValue:
                scanned = _scanned_labels(conn, where, params)
                raw, total, data = _build(conn, wanted, where, params, scanned, bool(text), path)
            if text:
                rows = conn.execute(f"SELECT prompt, text FROM calls WHERE {where} ORDER BY id", params).fetchall()
        finally:
            conn.execute("COMMIT")
        if scanned:  # note what the scan found, so the next read needs no scan
            with contextlib.suppress(sqlite3.Error):
                conn.executemany(LABEL_SQL, [(n, v) for n, values in scanned.items() for v in values])
    if text:
        # The chunks came in their own order; the prompts came by id: put them by the chunks' ids.
        position = np.argsort(raw["_id"], kind="stable")
        for i, name in enumerate(("prompt", "text")):
            values = np.empty(total, dtype=object)
            values[position] = [r[i] for r in rows]
            data[name] = pd.array(values, dtype="string")
    frame = pd.DataFrame(data, index=pd.RangeIndex(total))
    if "time" in raw and total > 1:
        # Rows are in the order they were written; a long call that started first ends last.
        times = raw["time"]
        if (times[1:] < times[:-1]).any():
            frame = frame.take(np.argsort(times, kind="stable")).reset_index(drop=True)
    return frame
