"""``pienteger-nb ledger migrate URL`` and ``pienteger-nb ledger copy FROM TO``.

A copy adds the source's rows the target lacks. Rows are matched by their content (every
stored column), counted as a multiset: copying twice adds nothing, and two genuinely equal
rows in the source stay two. Either side may be a SQLite file or a ``postgresql://`` URL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from .. import config
from ..errors import PientegerError
from .pgschema import quoted
from .schema import INSERT_COLUMNS

_BATCH = 5_000


def _fingerprint(values: Sequence[Any]) -> bytes:
    return hashlib.blake2b(json.dumps(list(values), default=str).encode(), digest_size=16).digest()


def _open(target: str, *, create: bool) -> Any:
    if config.is_database_url(target):
        from .postgres import PostgresLog

        log = PostgresLog(target)
        log.open()
        return log
    from .store import UsageLog

    if not create and not os.path.exists(os.path.expanduser(target)):
        raise FileNotFoundError(f"no ledger at {target}")
    return UsageLog(target)


def _rows(log: Any) -> Iterator[tuple[Any, ...]]:
    """Every row's ``INSERT_COLUMNS`` values, oldest first."""
    query = f"SELECT {', '.join(map(quoted, INSERT_COLUMNS))} FROM calls ORDER BY id"
    with log.reading() as conn:
        if hasattr(conn, "cursor") and not hasattr(conn, "executescript"):  # psycopg
            with conn.transaction(), conn.cursor(name=f"copy_{uuid.uuid4().hex}") as cur:
                cur.execute(query)
                while batch := cur.fetchmany(_BATCH):
                    yield from batch
            return
        yield from conn.execute(query)


def copy_ledger(source: str, target: str) -> tuple[int, int]:
    """Add ``source``'s rows that ``target`` lacks; returns (rows added, rows already there)."""
    src = _open(source, create=False)
    try:
        dst = _open(target, create=True)
        try:
            present = Counter(_fingerprint(row) for row in _rows(dst))
            missing: list[tuple[Any, ...]] = []
            skipped = 0
            for row in _rows(src):
                key = _fingerprint(row)
                if present[key] > 0:
                    present[key] -= 1
                    skipped += 1
                else:
                    missing.append(tuple(row))
            for start in range(0, len(missing), _BATCH):
                batch = missing[start : start + _BATCH]
                if hasattr(dst, "insert_rows"):
                    dst.insert_rows([(uuid.uuid4().hex, values) for values in batch])
                else:
                    dst._write(batch)  # keeps the SQLite file's labels with the rows
            return len(missing), skipped
        finally:
            dst.close()
    finally:
        src.close()


def add_ledger_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands of ``pienteger-nb ledger``."""
    actions = parser.add_subparsers(dest="action", metavar="{migrate,copy}", required=True)
    migrate = actions.add_parser("migrate", help="create or upgrade the ledger's tables at URL (or a SQLite file)")
    migrate.add_argument("url", metavar="URL", help="postgresql://user:password@host/db, or a SQLite file")
    copy = actions.add_parser(
        "copy", help="copy the rows of one ledger into another (copying twice adds nothing)"
    )
    copy.add_argument("source", metavar="FROM", help="a SQLite file or a postgresql:// URL")
    copy.add_argument("target", metavar="TO", help="a SQLite file or a postgresql:// URL")


def run_ledger(args: argparse.Namespace) -> int:
    """Run ``pienteger-nb ledger ...``; returns the exit status. Passwords are shown masked."""
    try:
        if args.action == "migrate":
            log = _open(args.url, create=True)
            try:
                version = log.open() if hasattr(log, "insert_rows") else log.schema_version
            finally:
                log.close()
            print(f"{config.mask_url(args.url)}: usage ledger schema at version {version}.")
            return 0
        added, skipped = copy_ledger(args.source, args.target)
        print(
            f"Copied {added:,} row(s) from {config.mask_url(args.source)} to {config.mask_url(args.target)}"
            f" ({skipped:,} already there)."
        )
        return 0
    except ImportError as exc:
        print(f"pienteger-nb ledger: error: {exc}; install the team extra: pip install \"pienteger_nb[team]\"",
              file=sys.stderr)
    except (OSError, PientegerError) as exc:
        print(f"pienteger-nb ledger: error: {_masked(str(exc), args)}", file=sys.stderr)
    return 2


def _masked(text: str, args: argparse.Namespace) -> str:
    from urllib.parse import unquote, urlsplit

    for value in (getattr(args, name, None) for name in ("url", "source", "target")):
        if value and config.is_database_url(value):
            password = urlsplit(value).password
            if password:
                text = text.replace(value, config.mask_url(value)).replace(password, "****")
                text = text.replace(unquote(password), "****")
    return text


__all__ = ["add_ledger_arguments", "copy_ledger", "run_ledger"]
