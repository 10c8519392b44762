"""Where a budget's spending and reservations are kept: the ledger's own database.

``LedgerSpend`` (``budget.py``) decides; a *spend book* stores. Both books keep running totals
per UTC day, month and all time, for the team (everyone sharing the ledger) and per user,
updated as each row is written (so a check never scans ``calls``), and the reservations of
calls still running, each with its user and an expiry. ``hold`` checks and reserves in one
step that every thread, process and host sharing the ledger takes in turn.

``SqliteSpendBook`` is this module's: one ``BEGIN IMMEDIATE`` transaction on the ledger file.
``pgbudget.PostgresSpendBook`` does the same on the team database under an advisory lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Amounts = tuple[float, float]  # (USD, tokens)
# Decides on (spent, held): an error to raise (nothing is reserved) or None (the call fits).
Check = Callable[[Amounts, Amounts], Exception | None]


class SpendBook(Protocol):
    """Spending and reservations for a budget; ``who=None`` is the team, else that user's share."""

    def read(self, period: str, who: str | None, now_us: int) -> tuple[Amounts, Amounts]:
        """(spent, held) in ``period``: recorded spending, and what live reservations hold."""
        ...

    def hold(self, period: str, who: str | None, user: str, usd: float, tokens: int, now_us: int,
             expires_us: int, check: Check) -> int:
        """Read, ``check`` and, when it passes, reserve for ``user``: one atomic step; the reservation's id."""
        ...

    def release(self, reservation: int) -> None:
        """The call's row is written: drop its reservation."""
        ...

    def prompt_ratio(self, model: str) -> tuple[int, int] | None:
        """(characters, reported prompt tokens) this ledger has seen for ``model``, if any."""
        ...


class SqliteLedger(Protocol):
    """What the SQLite book uses of ``store.UsageLog`` (named here: store does not import us)."""

    def immediate(self) -> object: ...

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]: ...


# A reservation of any period counts: a running call lands in today, this month and the total.
_HELD = "SELECT ifnull(sum(usd), 0), ifnull(sum(tokens), 0) FROM spend_reservations WHERE expires_us >= ?"


class SqliteSpendBook:
    """The book in a SQLite ledger file (``spend_totals``, ``spend_user_totals``, ``spend_reservations``)."""

    def __init__(self, log: SqliteLedger):
        self.log = log

    @staticmethod
    def _read(conn: object, period: str, who: str | None, now_us: int) -> tuple[Amounts, Amounts]:
        execute = conn.execute  # type: ignore[attr-defined]
        # Expired reservations are those of killed processes: gone, so they block no longer.
        execute("DELETE FROM spend_reservations WHERE expires_us < ?", (now_us,))
        if who is None:
            spent = execute("SELECT usd, tokens FROM spend_totals WHERE period = ?", (period,)).fetchone()
            held = execute(_HELD, (now_us,)).fetchone()
        else:
            spent = execute("SELECT usd, tokens FROM spend_user_totals WHERE user = ? AND period = ?",
                            (who, period)).fetchone()
            held = execute(_HELD + " AND user = ?", (now_us, who)).fetchone()
        return (tuple(spent) if spent else (0.0, 0.0)), tuple(held)  # type: ignore[return-value]

    def read(self, period: str, who: str | None, now_us: int) -> tuple[Amounts, Amounts]:
        with self.log.immediate() as conn:  # type: ignore[attr-defined]
            return self._read(conn, period, who, now_us)

    def hold(self, period: str, who: str | None, user: str, usd: float, tokens: int, now_us: int,
             expires_us: int, check: Check) -> int:
        with self.log.immediate() as conn:  # type: ignore[attr-defined]
            spent, held = self._read(conn, period, who, now_us)
            refusal = check(spent, held)
            if refusal is not None:
                raise refusal  # rolls back: nothing reserved (the expired ones stay deleted next time)
            cursor = conn.execute(
                "INSERT INTO spend_reservations (period, usd, tokens, expires_us, user) VALUES (?, ?, ?, ?, ?)",
                (period, usd, tokens, expires_us, user),
            )
            return int(cursor.lastrowid or 0)

    def release(self, reservation: int) -> None:
        self.log.execute("DELETE FROM spend_reservations WHERE id = ?", (reservation,))

    def prompt_ratio(self, model: str) -> tuple[int, int] | None:
        rows = self.log.execute("SELECT chars, tokens FROM prompt_ratio WHERE model = ?", (model,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None  # type: ignore[call-overload]


__all__ = ["Amounts", "Check", "SpendBook", "SqliteSpendBook"]
