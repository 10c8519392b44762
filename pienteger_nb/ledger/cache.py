"""The replay cache: successful answers kept in the ledger's database, by request key.

The client asks ``lookup(key)`` through ``pienteger_nb.replay``'s store before it sends a
request; a successful call's record carries the key and the answer, and ``UsageLog.record``
files it here. A replay's own record bumps the entry's ``replays`` count, which is what
``stats()`` adds up into the tokens and dollars it saved.

The table belongs to this module, not to the ledger's migrations: it is created (``IF NOT
EXISTS``, in a transaction) the first time a ledger's cache is used. It keeps the answer's
text; the prompt only when ``store_prompts`` is on (the key is a one-way hash of the request).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import sqlite3
import threading
import weakref
from typing import Any, Protocol

from ..types import CallRecord, Choice, Completion, Usage
from .prices import cost_usd


class UsageLog(Protocol):
    """What the cache uses of ``store.UsageLog`` (named here, not imported: store imports us)."""

    path: str
    _lock: threading.Lock

    def _connection(self) -> sqlite3.Connection: ...


def filed_row(rec: CallRecord, *, store_prompts: bool) -> tuple[Any, ...] | None:
    """The replay_cache row that keeps a fresh answer (None: the record carries none).

    The prompt is kept only with ``store_prompts``; the cost is what the answer cost when filed.
    """
    answer = rec.answer
    if answer is None:
        return None
    u = answer.usage
    return (
        rec.cache_key, rec.model, answer_json(answer), prompt_text(rec.prompt) if store_prompts else None,
        u.prompt_tokens, u.completion_tokens, u.total_tokens,
        cost_usd(rec.model, u.prompt_tokens, u.completion_tokens),
        _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


class ReplayCacheError(Exception):
    """The replay cache's table could not be read or written (the ledger wraps it in UsageLogError)."""

_CREATE = """CREATE TABLE IF NOT EXISTS replay_cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    answer TEXT NOT NULL,
    prompt TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    cost REAL,
    stored_at TEXT NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0
)"""
LOOKUP_SQL = "SELECT answer FROM replay_cache WHERE key = ?"
# A refresh replaces the answer; the replays it saved so far stay counted.
FILE_SQL = """INSERT INTO replay_cache
    (key, model, answer, prompt, prompt_tokens, completion_tokens, total_tokens, cost, stored_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(key) DO UPDATE SET model = excluded.model, answer = excluded.answer,
        prompt = excluded.prompt, prompt_tokens = excluded.prompt_tokens,
        completion_tokens = excluded.completion_tokens, total_tokens = excluded.total_tokens,
        cost = excluded.cost, stored_at = excluded.stored_at"""
REPLAYED_SQL = "UPDATE replay_cache SET replays = replays + 1 WHERE key = ?"
STATS_SQL = """SELECT count(*), coalesce(sum(replays), 0), coalesce(sum(replays * total_tokens), 0),
    sum(replays * cost), coalesce(sum(CASE WHEN cost IS NULL THEN replays ELSE 0 END), 0)
    FROM replay_cache"""


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """What the replay cache holds and has saved."""

    entries: int
    replays: int
    tokens_saved: int
    usd_saved: float  # over the priced entries
    unpriced_replays: int  # replays of answers from models without a price

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        if not self.entries and not self.replays:
            return "Replay cache: empty (no answers stored yet)."
        if self.unpriced_replays == self.replays and self.replays:
            usd = "USD unpriced"
        else:
            usd = f"${self.usd_saved:,.4f}"
            if self.unpriced_replays:
                usd += f" (+ {self.unpriced_replays:,} unpriced replays)"
        return (f"Replay cache: {self.entries:,} answers stored; {self.replays:,} replays saved "
                f"{self.tokens_saved:,} tokens and {usd}.")


def answer_json(answer: Completion) -> str:
    return json.dumps({
        "id": answer.id, "model": answer.model, "created": answer.created,
        "request_id": answer.request_id,
        "usage": [answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens,
                  answer.usage.source],
        "choices": [[c.text, c.index, c.finish_reason, c.logprobs] for c in answer.choices],
    }, separators=(",", ":"), ensure_ascii=False)


def answer_from(raw: str) -> Completion:
    data = json.loads(raw)
    p, c, t, source = data["usage"]
    return Completion(
        id=data["id"], model=data["model"], created=data["created"], request_id=data["request_id"],
        usage=Usage(prompt_tokens=p, completion_tokens=c, total_tokens=t, source=source),
        choices=tuple(Choice(text=x, index=i, finish_reason=f, logprobs=lp) for x, i, f, lp in data["choices"]),
        requested_model=data["model"],
    )


def prompt_text(prompt: Any) -> str | None:
    if prompt is None or isinstance(prompt, str):
        return prompt
    return json.dumps(list(prompt), ensure_ascii=False)


class ReplayCache:
    """The replay cache in one ledger's database (shares its connection and lock)."""

    def __init__(self, log: UsageLog):
        self._log = log
        self._ready = False

    @contextlib.contextmanager
    def _conn(self) -> Any:
        # The ledger's own connection, under its lock: one writer per process, as for rows.
        try:
            with self._log._lock:
                conn = self._log._connection()
                if not self._ready:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.execute(_CREATE)
                        conn.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                        raise
                    self._ready = True
                yield conn
        except sqlite3.Error as exc:
            raise ReplayCacheError(f"the replay cache in {self._log.path} failed: {exc}") from exc

    def lookup(self, key: str) -> Completion | None:
        """The stored answer for ``key``, or None."""
        with self._conn() as conn:
            row = conn.execute(LOOKUP_SQL, (key,)).fetchone()
        return None if row is None else answer_from(row[0])

    def file(self, rec: CallRecord, *, store_prompts: bool) -> None:
        """Keep a fresh successful answer under its key, or count a replay of one."""
        if rec.cache_key is None or rec.status != "ok":
            return
        if rec.cached:
            with self._conn() as conn:
                conn.execute(REPLAYED_SQL, (rec.cache_key,))
            return
        values = filed_row(rec, store_prompts=store_prompts)
        if values is None:
            return
        with self._conn() as conn:
            conn.execute(FILE_SQL, values)

    def stats(self) -> CacheStats:
        with self._conn() as conn:
            entries, replays, tokens, usd, unpriced = conn.execute(STATS_SQL).fetchone()
        return CacheStats(int(entries), int(replays), int(tokens), float(usd or 0.0), int(unpriced))

    def clear(self) -> int:
        """Forget every stored answer; returns how many there were."""
        with self._conn() as conn:
            return int(conn.execute("DELETE FROM replay_cache").rowcount)


_caches: weakref.WeakKeyDictionary[UsageLog, ReplayCache] = weakref.WeakKeyDictionary()


def cache_of(log: UsageLog) -> ReplayCache:
    """The replay cache in ``log``'s database."""
    cache = _caches.get(log)
    if cache is None:
        cache = _caches.setdefault(log, ReplayCache(log))
    return cache


__all__ = ["CacheStats", "ReplayCache", "ReplayCacheError", "cache_of"]
