"""``pienteger-nb``: the command line (``demo``, ``notebooks``, ``serve``, ``usage``, ``ledger``).

Each subcommand imports its implementation only when it runs, so ``pienteger-nb --help``
stays fast: the arguments of ``serve`` and ``usage`` come from the modules that run them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

PROG = "pienteger-nb"

# subcommand -> (one-line help, module, function adding its arguments, function running it)
_DELEGATED: dict[str, tuple[str, str, str, str]] = {
    "serve": (
        "run the bundled Pienteger emulator (a local server for tests, demos and offline work)",
        "pienteger_nb.emulator.cli",
        "add_serve_arguments",
        "run_serve",
    ),
    "usage": (
        "show the usage ledger (calls and tokens by model, day or source)",
        "pienteger_nb.ledger.usage_cli",
        "add_usage_arguments",
        "run_usage",
    ),
    "ledger": (
        "migrate or copy a usage ledger (a SQLite file or a team's postgresql:// database)",
        "pienteger_nb.ledger.transfer",
        "add_ledger_arguments",
        "run_ledger",
    ),
}

DEMO_HELP = "run the quickstart notebook against the bundled emulator (no key needed)"
NOTEBOOKS_HELP = "copy the example notebooks into DIR, to open and edit there"


def _find(module: str, name: str) -> Callable[..., object]:
    """``module.name``, imported now."""
    found: Callable[..., object] = getattr(importlib.import_module(module), name)
    return found


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", metavar="DIR", default="pienteger-demo",
        help="folder for the executed notebook, its HTML copy and the demo's ledger (default: %(default)s)",
    )
    parser.add_argument(
        "--db", metavar="PATH", default=None,
        help="usage ledger the demo's calls go to (default: DIR/usage.sqlite, not your own ledger)",
    )
    parser.add_argument(
        "--lab", action="store_true",
        help="open JupyterLab on the notebooks instead, with the emulator running (Ctrl-C stops both)",
    )
    parser.add_argument("--port", type=int, default=None, help="JupyterLab's port with --lab (default: a free one)")
    parser.add_argument(
        "--notebooks", metavar="DIR", default=None,
        help="the notebooks folder (default: the notebooks installed with the package)",
    )
    parser.add_argument(
        "--api-key", default=None,
        help="the key the emulator accepts (default: a random one; it is never printed)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one notebook cell may take (default: %(default)s)",
    )


def copy_notebooks(dest: str, *, force: bool) -> int:
    """``pienteger-nb notebooks DIR``: the bundled notebooks copied out; returns the exit status."""
    from pathlib import Path

    from . import examples

    folder = Path(dest).expanduser()
    if folder.exists() and not folder.is_dir():
        print(f"{PROG} notebooks: error: {folder} is a file, not a folder: pass a folder", file=sys.stderr)
        return 1
    try:
        copied, kept = examples.copy_to(folder, overwrite=force)
    except OSError as exc:
        print(f"{PROG} notebooks: error: cannot copy into {folder}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for path in copied:
        print(f"copied  {path}")
    for path in kept:
        print(f"kept    {path}  (already there; --force overwrites it)")
    print(f"Open them with: jupyter lab {folder}   (start with {examples.QUICKSTART})")
    return 0


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` gets its (lazily imported) arguments."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pienteger completions in Jupyter: a demo, the bundled emulator, the usage ledger.",
        epilog=f"Start here: {PROG} demo   (runs the quickstart notebook offline against the emulator)",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="{demo,notebooks,serve,usage,ledger}")
    demo = subparsers.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP)
    _add_demo_arguments(demo)
    notebooks = subparsers.add_parser("notebooks", help=NOTEBOOKS_HELP, description=NOTEBOOKS_HELP)
    notebooks.add_argument("dir", metavar="DIR", help="the folder to copy them into (created if need be)")
    notebooks.add_argument("--force", action="store_true", help="overwrite notebooks already in DIR")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, module, add_name, _run) in _DELEGATED.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _find(module, add_name)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pienteger-nb``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(args_list)
    except (ImportError, AttributeError) as exc:
        print(f"{PROG}: error: this subcommand is not available in this install ({exc})", file=sys.stderr)
        return 1
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        if args.command == "notebooks":
            return copy_notebooks(args.dir, force=args.force)
        _help, module, _add, run_name = _DELEGATED[args.command]
        return int(_find(module, run_name)(args))  # type: ignore[call-overload]
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # python -m pienteger_nb.cli
    sys.exit(main())
