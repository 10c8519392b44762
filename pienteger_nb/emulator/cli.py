"""``pienteger-nb serve``: the emulator in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from typing import Any

from .connections import default_max_connections
from .server import DEFAULT_IDLE_TIMEOUT, DEFAULT_KEY, DEFAULT_MAX_THREADS, Emulator

DEFAULT_PORT = 8765


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; the emulator is for local use)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--api-key", default=DEFAULT_KEY,
                        help=f"the key clients must send in X-Api-Key (default {DEFAULT_KEY!r}, a local "
                             "test key, not a secret)")
    parser.add_argument("--latency", type=_non_negative, default=0.0, metavar="SECONDS",
                        help="seconds before the first byte of every answer (default 0)")
    parser.add_argument("--tokens-per-second", type=_positive, default=None, metavar="N",
                        help="pace streamed tokens (and delay plain answers) to N tokens a second")
    parser.add_argument("--rpm", type=_positive_int, default=None, metavar="N",
                        help="requests per minute before /completions answers 429 with Retry-After")
    parser.add_argument("--getmodels-only", action="store_true",
                        help="answer 404 on /models so clients must fall back to /getmodels")
    parser.add_argument("--idle-timeout", type=_seconds, default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                        help=f"close a kept-alive connection idle this long (default {DEFAULT_IDLE_TIMEOUT:g})")
    parser.add_argument("--max-connections", type=_positive_int, default=None, metavar="N",
                        help="open connections before the longest-idle one is closed to make room "
                             f"(default {default_max_connections()}: half the open-file limit, at most 4096)")
    parser.add_argument("--max-threads", type=_positive_int, default=DEFAULT_MAX_THREADS, metavar="N",
                        help=f"requests served at once (default {DEFAULT_MAX_THREADS}); idle connections "
                             "hold no thread, a stalled request holds one until it ends")
    parser.add_argument("--quiet", action="store_true", help="do not print a line per request")


def _whole(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _port(text: str) -> int:
    return _whole(text, 0, 65535, "a whole number from 0 to 65535 (0 picks a free one)")


def _positive_int(text: str) -> int:
    return _whole(text, 1, 10**9, "a whole number > 0")


def _number(text: str, low: float, *, strict: bool, what: str = "") -> float:
    """``text`` as a finite number above ``low`` (or at it, unless ``strict``), else a one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # Written so NaN fails; inf is refused too (an infinite latency would hang every request).
    if not (math.isfinite(value) and (value > low if strict else value >= low)):
        raise argparse.ArgumentTypeError(f"must be {what}{'>' if strict else '>='} {low:g}, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    return _number(text, 0, strict=False)


def _positive(text: str) -> float:
    return _number(text, 0, strict=True)


def _seconds(text: str) -> float:
    value = _number(text, 0, strict=True, what="a number of seconds ")
    if value > threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {threading.TIMEOUT_MAX:g} seconds, got {text!r}")
    return value


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM); 0 on a clean stop, 1 when the port cannot be bound."""
    emu = Emulator(args.api_key, host=args.host, port=args.port, latency=args.latency,
                   tokens_per_second=args.tokens_per_second, rpm=args.rpm,
                   getmodels_only=args.getmodels_only, idle_timeout=args.idle_timeout,
                   max_connections=args.max_connections, max_threads=args.max_threads,
                   log=None if args.quiet else (lambda line: print(line, flush=True)))
    try:
        emu.start()
    except OSError as exc:
        print(f"pienteger-nb serve: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
              "pick another with --port (0 picks a free one).", file=sys.stderr)
        return 1
    # The key is a local test key chosen on this command line, so showing it is deliberate.
    key_shown = args.api_key if args.api_key == DEFAULT_KEY else "<the key you passed to --api-key>"
    print(f"Pienteger emulator serving at {emu.url}\n"
          f"Point pienteger_nb at it:\n"
          f"  export PIENTEGER_BASE_URL={emu.url}\n"
          f"  export PIENTEGER_API_KEY={key_shown}\n"
          f"Press Ctrl-C to stop.", flush=True)
    done = threading.Event()

    def _terminate(signum: int, frame: Any) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        emu.stop()
    print("Pienteger emulator stopped.", flush=True)
    return 0


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
