"""Which ledger ``PIENTEGER_USAGE_DB`` names: a SQLite file (the default) or a team's PostgreSQL.

``team_log(url)`` keeps one ``PostgresLog`` per URL in this process, so its connection pool
and spool are shared by every call; ``waiting_note()`` says how many rows wait for the server.
"""

from __future__ import annotations

import atexit
import threading

from .. import config
from .postgres import PostgresLog, TeamLedgerError

_lock = threading.Lock()
_team: dict[str, PostgresLog] = {}


def team_log(url: str) -> PostgresLog:
    """The process's ledger for the PostgreSQL database at ``url`` (made on first use)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise TeamLedgerError(
            "PIENTEGER_USAGE_DB names a PostgreSQL database but psycopg is not installed: "
            'pip install "pienteger_nb[team]" (or point PIENTEGER_USAGE_DB at a SQLite file)'
        ) from None
    with _lock:
        log = _team.get(url)
        if log is None or log.closed:
            log = _team[url] = PostgresLog(url)
        return log


def waiting_note() -> str:
    """For the default ledger: a line saying how many rows wait in the spool, or ""."""
    target = config.default_usage_db()
    if not config.is_database_url(target):
        return ""
    return team_log(target).waiting_note()


def close_team_logs() -> None:
    """Close every team ledger this process opened (tests, interpreter exit)."""
    with _lock:
        logs = list(_team.values())
        _team.clear()
    for log in logs:
        log.close()


# Close the server sessions cleanly when the kernel exits, rather than leaving them to the GC.
atexit.register(close_team_logs)

__all__ = ["close_team_logs", "team_log", "waiting_note"]
