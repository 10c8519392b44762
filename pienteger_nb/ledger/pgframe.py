"""Reading the team ledger (PostgreSQL) into the same DataFrame the SQLite ledger gives.

The rows leave the server in one ``COPY ... TO STDOUT`` (CSV), which pandas parses in C; the
values are brought to the forms ``frame._series`` takes (microseconds as integers, a sentinel
for NULL, category codes), so each column gets exactly the dtype and categories of the SQLite
reader, from the same code.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .frame import _BY_NAME, _CODED, _KNOWN, _NULL, COLUMNS, _Column, _names, _series, parse_when

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
        select = ", ".join([*(_select(c) for c in wanted), *extra])
        query = f"COPY (SELECT {select} FROM calls WHERE {where} ORDER BY time_us, id) TO STDOUT (FORMAT csv, NULL '\\N')"
        copy_params = [cats[c.name] for c in wanted if c.kind in _CODED] + params
        buffer = io.BytesIO()
        with conn.cursor() as cur, cur.copy(query, copy_params) as copy:
            for block in copy:
                buffer.write(block)
    names = [c.name for c in wanted] + extra
    text_names = {c.name for c in wanted if c.kind == "str"} | set(extra)
    dtypes = {name: (object if name in text_names else np.int64) for name in names}
    buffer.seek(0)
    if buffer.getbuffer().nbytes:
        raw = pd.read_csv(
            buffer, header=None, names=names, dtype=dtypes, keep_default_na=False, na_values=["\\N"],
            engine="c",
        )
    else:
        raw = pd.DataFrame({name: np.empty(0, dtype=dtypes[name]) for name in names})
    data: dict[str, Any] = {}
    for column in wanted:
        values = raw[column.name].to_numpy()
        if column.kind in _CODED:
            data[column.name] = _series(column, values, cats[column.name])
        elif column.kind == "bool":
            data[column.name] = _series(column, values.astype(bool), None)
        else:
            data[column.name] = _series(column, values, None)
    for name in extra:
        data[name] = pd.array(raw[name].to_numpy(), dtype="string")
    return pd.DataFrame(data, index=pd.RangeIndex(len(raw)))


__all__ = ["read_pg_frame", "where_clause"]
