"""``pienteger-nb usage``: the ledger's summary in a terminal (and an export)."""

from __future__ import annotations

import argparse
import os
import sys

from .. import config
from ..errors import PientegerError
from .schema import MEMORY
from .store import UsageLog, resolve_path


def add_usage_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pienteger-nb usage``."""
    from .views import BY_CHOICES

    parser.add_argument("--by", choices=BY_CHOICES, default="model", help="group rows by (default: model)")
    parser.add_argument("--since", default=None, help="from this time: 2026-11-01, 2026-11-01T09:00, 1h, 7d")
    parser.add_argument("--export", metavar="FILE", default=None, help="also write the rows to FILE (.csv or .parquet)")
    parser.add_argument("--db", metavar="PATH", default=None, help="ledger file (default: PIENTEGER_USAGE_DB or the XDG data dir)")


def run_usage(args: argparse.Namespace) -> int:
    """``pienteger-nb usage``: print the summary (and export); returns the exit status."""
    target = args.db or config.default_usage_db()
    if config.is_database_url(target):
        return _run_team_usage(target, args)
    path = resolve_path(target)
    if path != MEMORY and not os.path.exists(path):
        print(f"No calls recorded yet (no ledger at {path}).")
        return 0
    try:
        with UsageLog(path) as log:
            print(log.summary_text(args.by, since=args.since))
            if args.export:
                written = log.export(args.export, since=args.since)
                print(f"Wrote the rows to {written}.")
    except (ValueError, ImportError, OSError, PientegerError) as exc:
        print(f"pienteger-nb usage: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_team_usage(url: str, args: argparse.Namespace) -> int:
    """``pienteger-nb usage`` on a team's PostgreSQL ledger (the password never shown)."""
    from .postgres import PostgresLog

    try:
        with PostgresLog(url) as log:
            print(log.summary_text(args.by, since=args.since))
            if args.export:
                print(f"Wrote the rows to {log.export(args.export, since=args.since)}.")
    except (ValueError, ImportError, OSError, PientegerError) as exc:
        print(f"pienteger-nb usage: error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["add_usage_arguments", "run_usage"]
