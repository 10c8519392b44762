"""The replay cache on the team ledger: ``cache.py``'s semantics in the team's PostgreSQL database.

The ``replay_cache`` table is made by ``pgschema``'s migration. Answers are shared by everyone
on the database (the key covers the service's URL, the model, the prompt and every parameter),
the prompt is kept only with ``store_prompts``, and a replay's row bumps the entry's count.

While the server is down (``PostgresLog.available()`` says so) a lookup finds nothing, so the
call goes to the service instead of waiting for a connect timeout; filing is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..types import CallRecord, Completion
from .cache import (
    FILE_SQL,
    LOOKUP_SQL,
    REPLAYED_SQL,
    STATS_SQL,
    CacheStats,
    ReplayCacheError,
    answer_from,
    filed_row,
)

if TYPE_CHECKING:  # pragma: no cover
    from .pgpool import Pool


class PostgresLog(Protocol):
    """What the cache uses of ``postgres.PostgresLog`` (named here, not imported: it imports us)."""

    _pool: Pool

    def _failure(self, exc: BaseException) -> Exception: ...

    def available(self) -> bool: ...

    def mark_down(self) -> None: ...


def _pg(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (the statements are otherwise the same)."""
    return sql.replace("?", "%s")


_PG_LOOKUP, _PG_FILE, _PG_REPLAYED = _pg(LOOKUP_SQL), _pg(FILE_SQL), _pg(REPLAYED_SQL)


class PostgresReplayCache:
    """The replay cache in a team ledger's database; the same methods as ``cache.ReplayCache``."""

    def __init__(self, log: PostgresLog):
        self._log = log

    def _run(self, work: Any) -> Any:
        import psycopg

        try:
            return self._log._pool.run(work)
        except psycopg.Error as exc:
            self._log.mark_down()
            raise ReplayCacheError(f"the replay cache: {self._log._failure(exc)}") from None

    def lookup(self, key: str) -> Completion | None:
        """The stored answer for ``key``, or None (also while the server cannot be reached)."""
        if not self._log.available():
            return None
        row = self._run(lambda conn: conn.execute(_PG_LOOKUP, (key,)).fetchone())
        return None if row is None else answer_from(row[0])

    def file(self, rec: CallRecord, *, store_prompts: bool) -> None:
        """Keep a fresh successful answer under its key, or count a replay of one."""
        if rec.cache_key is None or rec.status != "ok" or not self._log.available():
            return
        if rec.cached:
            self._run(lambda conn: conn.execute(_PG_REPLAYED, (rec.cache_key,)))
            return
        values = filed_row(rec, store_prompts=store_prompts)
        if values is None:
            return
        self._run(lambda conn: conn.execute(_PG_FILE, values))

    def stats(self) -> CacheStats:
        entries, replays, tokens, usd, unpriced = self._run(lambda conn: conn.execute(STATS_SQL).fetchone())
        return CacheStats(int(entries), int(replays), int(tokens), float(usd or 0.0), int(unpriced))

    def clear(self) -> int:
        """Forget every stored answer; returns how many there were."""
        return int(self._run(lambda conn: conn.execute("DELETE FROM replay_cache").rowcount))


__all__ = ["PostgresReplayCache"]
