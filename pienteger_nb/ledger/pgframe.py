"""Reading the team ledger (PostgreSQL) into the same DataFrame the SQLite ledger gives.

Row by row costs ~10 µs a row in Python, so, as the SQLite reader does, the server joins each
column of a window of ids into one string (``string_agg``; ``json_agg`` for free text) that
numpy parses in C. Category columns travel as their codes. The values are brought to the forms ``frame._series`` takes (microseconds as integers, a sentinel
for NULL, category codes), so each column gets exactly the dtype and categories of the SQLite
reader, from the same code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .frame import (
    _BY_NAME,
    _CODED,
    _KNOWN,
    _NULL,
    COLUMNS,
    _Column,
    _layout,
    _names,
    _parse_ints,
    _series,
    parse_when,
)
from .pgschema import quoted

# Ids per query: keeps each aggregated string far below PostgreSQL's 1 GB value limit.
_WINDOW = 1_000_000
# Connections reading windows at once (the server builds each window's strings in its own process).
_READERS = 4

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import psycopg

    from .frame import When



def where_clause(since: When, until: When, model: Any, source: Any) -> tuple[str, list[Any]]:
    """SQL condition (psycopg placeholders) and parameters for a selection of calls."""
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    start, end = parse_when(since, name="since"), parse_when(until, name="until")
    if start is not None:
        clauses.append("time_us >= %s")
        params.append(start)
    if end is not None:
        clauses.append("time_us < %s")
        params.append(end)
    for column, value in (("model", _names(model, name="model")), ("source", _names(source, name="source"))):
        if value is not None:
            clauses.append(f"{quoted(column)} = ANY(%s)")
            params.append(value)
    return " AND ".join(clauses), params


def _select(column: _Column) -> str:
    """The SQL expression that sends a column in the raw form ``_series`` takes."""
    name = quoted(column.name)
    if column.kind == "time":
        return "time_us"
    if column.kind in _CODED:  # its code in the categories (a parameter); -1 for NULL
        return f"coalesce(array_position(%s::text[], {name}), 0) - 1"
    if column.kind == "str":
        return name
    if column.kind == "seconds":  # to the microsecond, as the SQLite reader rounds
        return f"coalesce(floor({name} * 1e6 + 0.5)::bigint, {_NULL})"
    if column.kind == "bool":
        return f"({name} <> 0)::int"
    if column.kind == "float":  # NULL (unpriced) travels as nan; ::text is the shortest exact form
        return f"coalesce({name}::text, 'nan')"
    return f"coalesce({name}::bigint, {_NULL})"


def _categories(conn: psycopg.Connection[Any], coded: list[_Column], where: str, params: list[Any]) -> dict[str, list[str]]:
    """Each coded column's categories: the known ones, then the others present, sorted.

    One pass finds the few combinations of their values, so the rows can travel as codes.
    """
    if not coded:
        return {}
    names = [c.name for c in coded]
    found: dict[str, set[str]] = {name: set() for name in names}
    for row in conn.execute(f"SELECT DISTINCT {', '.join(map(quoted, names))} FROM calls WHERE {where}", params):
        for name, value in zip(names, row):
            if value is not None:
                found[name].add(value)
    cats = {}
    for name in names:
        known = list(_KNOWN.get(name, ()))
        cats[name] = known + sorted(found[name].difference(known))
    return cats


def _packed_sql(fields: list[tuple[_Column, int, int]], cats: dict[str, list[str]]) -> tuple[str, list[Any]]:
    """One integer per row holding every coded column's code (and the bools), as ``frame`` packs them."""
    parts, params = [], []
    for column, shift, _ in fields:
        if column.kind == "bool":
            parts.append(f"(({quoted(column.name)} <> 0)::int::bigint << {shift})")
            continue
        n = len(cats[column.name])
        # 0..n-1: a category; n: NULL (a value missing from cats cannot happen: cats came from the rows).
        whens = " ".join(f"WHEN %s THEN {i}" for i in range(n))
        code = f"CASE {quoted(column.name)} {whens} ELSE {n} END" if n else f"{n}"
        parts.append(f"(({code})::bigint << {shift})")
        params.extend(cats[column.name])
    return "string_agg((" + " | ".join(parts) + ")::text, ',')", params


def _unpack(word: Any, fields: list[tuple[_Column, int, int]], cats: dict[str, list[str]]) -> dict[str, Any]:
    import numpy as np

    raw: dict[str, Any] = {}
    for column, shift, width in fields:
        codes = (word >> shift) & ((1 << width) - 1)
        if column.kind == "bool":
            raw[column.name] = codes.astype(bool)
        else:
            raw[column.name] = np.where(codes == len(cats[column.name]), -1, codes)
    return raw


_SNAPSHOT = re.compile(r"^[0-9A-Fa-f-]+$")


def _windows(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    size = min(_WINDOW, max(1, -(-(high - low + 1) // parts)))
    return [(first, first + size) for first in range(low, high + 1, size)]


def read_pg_frame(
    conn: psycopg.Connection[Any], *, since: When = None, until: When = None, model: Any = None,
    source: Any = None, columns: Iterable[str] | None = None, text: bool | None = None,
    helper: Callable[[Callable[[psycopg.Connection[Any]], Any]], Any] | None = None,
) -> pd.DataFrame:
    """The selected calls as a DataFrame sorted by time, like ``frame.read_frame`` (see ``usage()``).

    ``helper(work)`` runs ``work(conn)`` on another connection (the pool's ``run``): with it,
    windows of ids are read at once on several connections sharing this one's snapshot.
    """
    import numpy as np
    import pandas as pd

    wanted = [_BY_NAME[n] for n in columns] if columns is not None else list(COLUMNS)
    where, params = where_clause(since, until, model, source)
    with conn.transaction():  # one snapshot for every query below, shared with the helpers
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if text is None:
            row = conn.execute(
                f"SELECT EXISTS(SELECT 1 FROM calls WHERE (prompt IS NOT NULL OR text IS NOT NULL) AND {where})",
                params,
            ).fetchone()
            text = bool(row and row[0])
        extra = ["prompt", "text"] if text else []
        cats = _categories(conn, [c for c in wanted if c.kind in _CODED], where, params)
        packed = _layout(wanted, cats).fields
        in_packed = {c.name for c, _, _ in packed}
        numeric = [c for c in wanted if c.kind not in ("str", "time") and c.name not in in_packed]
        texts = [c.name for c in wanted if c.kind == "str"] + extra
        select = ["count(*)", "string_agg(time_us::text, ',')", "string_agg(id::text, ',')"]
        select_params: list[Any] = []
        if packed:
            sql, select_params = _packed_sql(packed, cats)
            select.append(sql)
        select += [f"string_agg(({_select(c)})::text, ',')" for c in numeric]
        # Coded columns with too many values to pack send their own codes (array_position).
        select_params += [cats[c.name] for c in numeric if c.kind in _CODED]
        select += [f"json_agg({quoted(name)})::text" for name in texts]
        bounds: Any = conn.execute(f"SELECT min(id), max(id) FROM calls WHERE {where}", params).fetchone()
        low, high = bounds
        query = f"SELECT {', '.join(select)} FROM calls WHERE {where} AND id >= %s AND id < %s"
        windows = _windows(low, high, _READERS if helper else 1) if low is not None else []
        chunks = _fetch(conn, query, [*select_params, *params], windows, helper)
    total = 0
    names = ["_time", "_id", *(["_packed"] if packed else []), *(c.name for c in numeric)]
    floats = {c.name: np.float64 for c in numeric if c.kind == "float"}
    parts: dict[str, list[Any]] = {name: [] for name in [*names, *texts]}
    for chunk in chunks:
        count = chunk[0]
        if not count:
            continue
        total += count
        fields = iter(chunk[1:])
        for name in names:
            parts[name].append(_parse_ints(next(fields), count, floats.get(name)))
        for name in texts:
            parts[name].extend(json.loads(next(fields)))

    def joined(name: str) -> Any:
        return np.concatenate(parts[name]) if parts[name] else np.empty(0, dtype=np.int64)

    order = np.lexsort((joined("_id"), joined("_time")))
    raw = _unpack(joined("_packed")[order], packed, cats) if packed else {}
    raw["time"] = joined("_time")[order]
    for column in numeric:
        raw[column.name] = joined(column.name)[order]
    data: dict[str, Any] = {}
    for column in wanted:
        if column.kind == "str":
            values: Any = np.array(parts[column.name], dtype=object)[order] if total else []
            data[column.name] = _series(column, values, None)
        else:
            data[column.name] = _series(column, raw[column.name], cats.get(column.name))
    for name in extra:
        found = np.array(parts[name], dtype=object)[order] if total else np.empty(0, dtype=object)
        data[name] = pd.array(found, dtype="string")
    return pd.DataFrame(data, index=pd.RangeIndex(total))


def _fetch(
    conn: psycopg.Connection[Any], query: str, params: list[Any], windows: list[tuple[int, int]],
    helper: Callable[[Callable[[psycopg.Connection[Any]], Any]], Any] | None,
) -> list[Any]:
    """One aggregate row per window; with a helper, the windows run at once on several connections."""
    # No parallel scan: every aggregate of one scan must see the rows in the same order.
    conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    if helper is None or len(windows) <= 1:
        return [conn.execute(query, [*params, a, b]).fetchone() for a, b in windows]
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert snapshot is not None and _SNAPSHOT.match(snapshot[0])

    def read(window: tuple[int, int]) -> Any:
        def work(other: psycopg.Connection[Any]) -> Any:
            with other.transaction():
                other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot[0]}'")
                other.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                return other.execute(query, [*params, *window]).fetchone()

        return helper(work)

    with ThreadPoolExecutor(min(len(windows), _READERS), thread_name_prefix="pienteger-team-read") as pool:
        return list(pool.map(read, windows))


__all__ = ["read_pg_frame", "where_clause"]
