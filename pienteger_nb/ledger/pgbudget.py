"""Budgets on the team ledger: the spend book (``spendbook.py``) in PostgreSQL.

A check and its reservation are one transaction holding a transaction-scoped advisory lock,
so every kernel on every host that shares the database takes its turn: none reads the totals
while another is between its own read and its reservation. One lock for the whole database
(not one per user) because a team budget and a user's budget overlap; a turn is two round
trips, so the queue is short. The totals themselves are kept by the trigger ``pgschema``
installs, in the transaction that inserts each row.

When the server cannot be reached a budget cannot be checked, so the call is refused (saying
why); a reservation that cannot be released expires on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BudgetExceededError
from .spendbook import Amounts, Check

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from .postgres import PostgresLog

# Beside pgschema.MIGRATION_LOCK ("pint"): "pinu", an advisory lock no other application shares.
SPEND_LOCK = 0x70696E75

# Deleting the expired reservations (a killed kernel's) and reading, in one round trip.
_READ = """WITH gone AS (DELETE FROM spend_reservations WHERE expires_us < %(now)s RETURNING 1)
SELECT coalesce((SELECT usd FROM spend_totals WHERE scope = %(scope)s AND who = %(who)s AND period = %(period)s), 0),
       coalesce((SELECT tokens FROM spend_totals WHERE scope = %(scope)s AND who = %(who)s AND period = %(period)s), 0),
       coalesce(sum(usd), 0), coalesce(sum(tokens), 0)
FROM spend_reservations
WHERE expires_us >= %(now)s AND (%(scope)s = 'team' OR who = %(who)s)"""
_RESERVE = """INSERT INTO spend_reservations (who, period, usd, tokens, expires_us)
VALUES (%s, %s, %s, %s, %s) RETURNING id"""


class PostgresSpendBook:
    """The spend book in a team ledger's database (tables: ``pgschema``)."""

    def __init__(self, log: PostgresLog):
        self.log = log

    def _run(self, work: Any) -> Any:
        import psycopg

        try:
            return self.log._pool.run(work)
        except psycopg.Error as exc:
            raise BudgetExceededError(
                f"the budget cannot be checked: {self.log._failure(exc)}",
                advice="wait for the team ledger to be back, or turn the budget off with set_budget(None)",
            ) from None

    @staticmethod
    def _params(period: str, who: str | None, now_us: int) -> dict[str, Any]:
        return {"now": now_us, "scope": "team" if who is None else "user", "who": who or "", "period": period}

    @staticmethod
    def _split(row: Any) -> tuple[Amounts, Amounts]:
        return (float(row[0]), float(row[1])), (float(row[2]), float(row[3]))

    def read(self, period: str, who: str | None, now_us: int) -> tuple[Amounts, Amounts]:
        def work(conn: psycopg.Connection[Any]) -> tuple[Amounts, Amounts]:
            with conn.transaction():
                return self._split(conn.execute(_READ, self._params(period, who, now_us)).fetchone())

        result: tuple[Amounts, Amounts] = self._run(work)
        return result

    def hold(self, period: str, who: str | None, user: str, usd: float, tokens: int, now_us: int,
             expires_us: int, check: Check) -> int:
        def work(conn: psycopg.Connection[Any]) -> int | Exception:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SPEND_LOCK,))
                spent, held = self._split(conn.execute(_READ, self._params(period, who, now_us)).fetchone())
                refusal = check(spent, held)
                if refusal is not None:
                    # Returned, not raised: the transaction commits (the expired ones deleted)
                    # and the connection goes back to the pool instead of being closed.
                    return refusal
                row = conn.execute(_RESERVE, (user, period, usd, tokens, expires_us)).fetchone()
                assert row is not None
                return int(row[0])

        result = self._run(work)
        if isinstance(result, Exception):
            raise result
        return int(result)

    def release(self, reservation: int) -> None:
        self._run(lambda conn: conn.execute("DELETE FROM spend_reservations WHERE id = %s", (reservation,)))

    def prompt_ratio(self, model: str) -> tuple[int, int] | None:
        row = self._run(lambda conn: conn.execute(
            "SELECT chars, tokens FROM prompt_ratio WHERE model = %s", (model,)).fetchone())
        return (int(row[0]), int(row[1])) if row else None


__all__ = ["SPEND_LOCK", "PostgresSpendBook"]
