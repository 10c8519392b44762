"""Reading the team ledger (PostgreSQL) into the same DataFrame the SQLite ledger gives.

Row by row costs ~10 µs a row in Python, so, as the SQLite reader does, the server joins each
column of a window of ids into one string (``string_agg``; ``json_agg`` for free text) that
numpy parses in C. Category columns travel as their codes. The values are brought to the forms ``frame._series`` takes (microseconds as integers, a sentinel
for NULL, category codes), so each column gets exactly the dtype and categories of the SQLite
reader, from the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .frame import _BY_NAME, _CODED, _KNOWN, _NULL, COLUMNS, _Column, _names, _parse_ints, _series, parse_when

# Ids per query: keeps each aggregated string far below PostgreSQL's 1 GB value limit.
_WINDOW = 1_000_000

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
            clauses.append(f"{column} = ANY(%s)")
            params.append(value)
    return " AND ".join(clauses), params


def _select(column: _Column) -> str:
    """The SQL expression that sends a column in the raw form ``_series`` takes."""
    if column.kind == "time":
        return "time_us"
    if column.kind in _CODED:  # its code in the categories (a parameter); -1 for NULL
        return f"coalesce(array_position(%s::text[], {column.name}), 0) - 1"
    if column.kind == "str":
        return column.name
    if column.kind == "seconds":  # to the microsecond, as the SQLite reader rounds
        return f"coalesce(floor({column.name} * 1e6 + 0.5)::bigint, {_NULL})"
    if column.kind == "bool":
        return f"({column.name} <> 0)::int"
    return f"coalesce({column.name}::bigint, {_NULL})"


def _categories(conn: psycopg.Connection[Any], coded: list[_Column], where: str, params: list[Any]) -> dict[str, list[str]]:
    """Each coded column's categories: the known ones, then the others present, sorted.

    One pass finds the few combinations of their values, so the rows can travel as codes.
    """
    if not coded:
        return {}
    names = [c.name for c in coded]
    found: dict[str, set[str]] = {name: set() for name in names}
    for row in conn.execute(f"SELECT DISTINCT {', '.join(names)} FROM calls WHERE {where}", params):
        for name, value in zip(names, row):
            if value is not None:
                found[name].add(value)
    cats = {}
    for name in names:
        known = list(_KNOWN.get(name, ()))
        cats[name] = known + sorted(found[name].difference(known))
    return cats


def read_pg_frame(
    conn: psycopg.Connection[Any], *, since: When = None, until: When = None, model: Any = None,
    source: Any = None, columns: Iterable[str] | None = None, text: bool | None = None,
) -> pd.DataFrame:
    """The selected calls as a DataFrame sorted by time, like ``frame.read_frame`` (see ``usage()``)."""
    import numpy as np
    import pandas as pd

    wanted = [_BY_NAME[n] for n in columns] if columns is not None else list(COLUMNS)
    where, params = where_clause(since, until, model, source)
    with conn.transaction():  # one snapshot for the check and the rows
        if text is None:
            row = conn.execute(
                f"SELECT EXISTS(SELECT 1 FROM calls WHERE (prompt IS NOT NULL OR text IS NOT NULL) AND {where})",
                params,
            ).fetchone()
            text = bool(row and row[0])
        extra = ["prompt", "text"] if text else []
        cats = _categories(conn, [c for c in wanted if c.kind in _CODED], where, params)
        # Every aggregate of one non-parallel scan sees the rows in the same order, so the
        # columns line up; they are put in time order afterwards, by time_us and id.
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        numeric = [c for c in wanted if c.kind != "str"]
        texts = [c.name for c in wanted if c.kind == "str"] + extra
        select = [
            "count(*)", "string_agg(time_us::text, ',')", "string_agg(id::text, ',')",
            *(f"string_agg(({_select(c)})::text, ',')" for c in numeric),
            *(f"json_agg({name})::text" for name in texts),
        ]
        select_params = [cats[c.name] for c in numeric if c.kind in _CODED]
        bounds: Any = conn.execute(f"SELECT min(id), max(id) FROM calls WHERE {where}", params).fetchone()
        low, high = bounds
        query = f"SELECT {', '.join(select)} FROM calls WHERE {where} AND id >= %s AND id < %s"
        chunks: list[Any] = []
        if low is not None:
            for first in range(low, high + 1, _WINDOW):
                chunks.append(conn.execute(query, [*select_params, *params, first, first + _WINDOW]).fetchone())
    total = 0
    parts: dict[str, list[Any]] = {name: [] for name in ["_time", "_id", *(c.name for c in numeric), *texts]}
    for chunk in chunks:
        count = chunk[0]
        if not count:
            continue
        total += count
        fields = iter(chunk[1:])
        for name in ("_time", "_id", *(c.name for c in numeric)):
            parts[name].append(_parse_ints(next(fields), count))
        for name in texts:
            parts[name].extend(json.loads(next(fields)))

    def joined(name: str) -> Any:
        return np.concatenate(parts[name]) if parts[name] else np.empty(0, dtype=np.int64)

    order = np.lexsort((joined("_id"), joined("_time")))
    data: dict[str, Any] = {}
    for column in wanted:
        if column.kind == "str":
            values: Any = np.array(parts[column.name], dtype=object)[order] if total else []
            data[column.name] = _series(column, values, None)
            continue
        values = joined(column.name)[order]
        if column.kind in _CODED:
            data[column.name] = _series(column, values, cats[column.name])
        elif column.kind == "bool":
            data[column.name] = _series(column, values.astype(bool), None)
        else:
            data[column.name] = _series(column, values, None)
    for name in extra:
        found = np.array(parts[name], dtype=object)[order] if total else np.empty(0, dtype=object)
        data[name] = pd.array(found, dtype="string")
    return pd.DataFrame(data, index=pd.RangeIndex(total))


__all__ = ["read_pg_frame", "where_clause"]
