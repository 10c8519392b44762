"""The default ledger (``PIENTEGER_USAGE_DB``: a SQLite file, or a team's PostgreSQL) and the
functions that work on it: ``record_call`` (the client's default recorder), ``usage()``,
``usage_summary()``, export, plot, and the replay cache's store.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..types import CallRecord, Completion
from .cache import CacheStats, ReplayCacheError, cache_of
from .failure import UsageLogError
from .store import UsageLog, resolve_path
from .unrecorded import unrecorded_tally, with_unrecorded_attrs

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .frame import When
    from .views import Prices


_default_lock = threading.Lock()
_default: UsageLog | None = None


def default_log() -> UsageLog:
    """The ledger at ``config.default_usage_db()``; a new one whenever that path changes.

    A ``postgresql://`` URL gives the team ledger (``PostgresLog``, the same methods).
    """
    global _default
    target = config.default_usage_db()
    if config.is_database_url(target):
        from .backend import team_log

        return team_log(target)  # type: ignore[return-value]
    path = resolve_path(target)
    with _default_lock:
        if _default is None or _default.path != path or _default.closed:
            old, _default = _default, UsageLog(path)
            if old is not None:
                old.close()
        return _default


def record_call(rec: CallRecord) -> None:
    """Record one call in the default ledger: the client's default recorder.

    A ledger that cannot be written warns once (the call itself has succeeded or failed on its
    own); that call and every later one until recording works again are counted in
    ``unrecorded_calls()``, which ``%pienteger usage`` and ``usage().attrs`` show.
    """
    try:
        default_log().record(rec)
    except Exception as exc:  # noqa: BLE001 - a recorder must not fail the call; counted instead
        reason = str(exc) if isinstance(exc, UsageLogError) else f"could not record in the usage ledger: {exc!r}"
        if unrecorded_tally.failed(reason) == 1:
            warnings.warn(
                f"{reason} (this call and later ones that cannot be recorded are counted in "
                "%pienteger usage and usage().attrs['unrecorded_calls'])", RuntimeWarning, stacklevel=2,
            )
    else:
        unrecorded_tally.succeeded()




def replay_cache_of(log: Any) -> Any:
    """The replay cache in ``log``'s database: its SQLite file, or the team's PostgreSQL."""
    return cache_of(log) if isinstance(log, UsageLog) else log.replay_cache


class LedgerReplay:
    """The package's replay store: the default ledger's cache, found at each call."""

    def lookup(self, key: str) -> Completion | None:
        try:
            answer: Completion | None = replay_cache_of(default_log()).lookup(key)
        except ReplayCacheError as exc:
            raise UsageLogError(str(exc)) from exc
        return answer


def clear_cache() -> int:
    """Empty the replay cache in the default ledger; returns how many answers it held."""
    try:
        return int(replay_cache_of(default_log()).clear())
    except ReplayCacheError as exc:
        raise UsageLogError(str(exc)) from exc


def cache_stats() -> CacheStats:
    """What the default ledger's replay cache holds and has saved (entries, replays, tokens, USD)."""
    try:
        stats: CacheStats = replay_cache_of(default_log()).stats()
    except ReplayCacheError as exc:
        raise UsageLogError(str(exc)) from exc
    return stats


def usage(
    since: When = None, until: When = None, *, model: str | Iterable[str] | None = None,
    source: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every recorded call as a DataFrame, oldest first.

    Columns: ``time`` (datetime64[ns, UTC], request start), ``source``, ``model``, ``status``
    (category), ``error`` (string, "" when ok), ``http_status`` (Int64), ``stream`` (bool),
    ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` (Int64), ``usage_source``
    (category), ``latency_s``, ``ttft_s`` (float, to the microsecond), ``finish_reason``,
    ``request_id`` (string), ``attempts`` (Int64), ``endpoint`` (category),
    ``execution_count`` (Int64); and ``prompt``, ``text`` (string) when any selected row stored
    them (see the ``store_prompts`` setting; a list of prompts is kept as a JSON array).

    ``since`` (inclusive) and ``until`` (exclusive) take a datetime or pandas Timestamp (naive
    means UTC), a date or ISO string (``"2026-11-01"`` is midnight UTC), or a span back from
    now: ``"90s"``, ``"30m"``, ``"1h"``, ``"7d"``, ``"2w"``, or a timedelta. ``model`` and
    ``source`` take one name or a list.

    ``attrs["unrecorded_calls"]``: calls made since recording last worked that could not be
    recorded (they are not among the rows), with ``attrs["unrecorded_reason"]`` when not 0.
    """
    return with_unrecorded_attrs(default_log().frame(since, until, model=model, source=source))


def usage_summary(
    by: str = "model", *, since: When = None, until: When = None, prices: Prices | None = None
) -> pd.DataFrame:
    """One row per ``by`` group ("model", "day" (UTC), "source", "notebook", "user", or "cell":
    indexed by ``notebook`` and ``execution_count``), index named after it.

    Columns: ``calls``, ``errors``, ``cancelled``, ``prompt_tokens``, ``completion_tokens``,
    ``total_tokens``, ``mean_latency_s`` and ``p95_latency_s`` (over ok calls), and ``cost``:
    the USD each row was recorded with, or, with ``prices`` (model -> USD per 1K tokens, a
    number or ``{"prompt": x, "completion": y}``), recomputed at those prices. NaN, not 0, for
    a group that spent tokens on a model with no price.
    """
    return with_unrecorded_attrs(default_log().summary(by, since=since, until=until, prices=prices))


def summary_text(by: str = "model", since: When = None, *, prices: Prices | None = None) -> str:
    """The default ledger's summary as a plain-text table (``%pienteger usage``, the CLI)."""
    return default_log().summary_text(by, since=since, prices=prices)


def export(
    path: str | os.PathLike[str], *, since: When = None, until: When = None,
    model: str | Iterable[str] | None = None, source: str | Iterable[str] | None = None,
) -> Path:
    """Write the default ledger's rows to ``path`` (CSV, or parquet for ``*.parquet``)."""
    return default_log().export(path, since=since, until=until, model=model, source=source)


def plot(
    *, since: When = None, until: When = None, model: str | Iterable[str] | None = None,
    source: str | Iterable[str] | None = None, freq: str | None = None, ax: Any = None,
) -> Any:
    """Tokens over time by model from the default ledger; returns the matplotlib Axes."""
    return default_log().plot(since=since, until=until, model=model, source=source, freq=freq, ax=ax)


__all__ = [
    "LedgerReplay",
    "cache_stats",
    "clear_cache",
    "default_log",
    "export",
    "plot",
    "record_call",
    "replay_cache_of",
    "summary_text",
    "usage",
    "usage_summary",
]
