"""Shell-like parsing of ``%%pienteger`` options and ``%pienteger`` subcommands.

IPython's own ``parse_argstring`` keeps the quotes around values (``--suffix "the end"``
arrives as ``"the end"`` with its quotes), so the line is split here instead: quotes are
removed as in a shell, and a backslash escapes a quote. Other backslashes are kept as typed
(``\\n`` stays two characters, Windows paths survive); ``--stop`` and ``--suffix`` then read
``\\n``, ``\\t`` and ``\\\\`` as newline, tab and backslash.
"""

from __future__ import annotations

import argparse
import keyword
import re
from typing import Any

from IPython.core.error import UsageError

from ..config import FORMATS

_ESCAPES = re.compile(r"\\([nt\\])")


def split_line(line: str) -> list[str]:
    """The words of a magic line, quotes removed as in a shell; UsageError on a stray quote.

    As in a shell, ``\\"`` is a quote inside double quotes, and outside quotes ``\\'``,
    ``\\"`` and ``\\ `` (backslash space) are the character itself. Every other backslash
    stays as typed (``\\n`` and ``\\\\`` reach ``unescape``; Windows paths survive).
    """
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        nxt = line[i + 1] if i + 1 < len(line) else ""
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                current.append(ch)
        elif ch == "\\" and (nxt == "\\" or nxt == '"' or (not quote and (nxt == "'" or nxt.isspace()))):
            current.append("\\\\" if nxt == "\\" else nxt)  # \\ stays two characters for unescape()
            in_word = True
            i += 1
        elif quote:  # inside double quotes
            if ch == '"':
                quote = ""
            else:
                current.append(ch)
        elif ch in "'\"":
            quote = ch
            in_word = True
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
            current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
        i += 1
    if quote:
        raise UsageError(f"could not read the options: No closing quotation ({quote}); quote values as in a shell")
    if in_word:
        words.append("".join(current))
    return words


def fill_words(words: list[str], namespace: Any) -> list[str]:
    """The words with ``{name}`` fields filled as in the prompt (``interpolate``), unless
    ``--no-interpolate`` (or a prefix argparse would accept) is among them.

    The magic is registered with ``no_var_expand``: IPython's own expansion of magic lines
    would evaluate ``{x.__class__}`` and turn ``$5`` into ``5``, whatever the quotes said.
    """
    if namespace is None or any(len(w) > 5 and "--no-interpolate".startswith(w) for w in words):
        return words
    from ..interpolate import interpolate

    return [interpolate(w, namespace) for w in words]


MAX_STOPS = 4  # the service takes one to four stop sequences


def take_values(
    words: list[str], options: tuple[str, ...] = ("--stop", "--suffix")
) -> tuple[list[str], dict[str, list[str]]]:
    """The words without ``--stop VALUE ...`` / ``--stop=VALUE`` (and ``--suffix VALUE``), and
    those values by option. They are taken out before argparse, which reads a value that starts
    with a dash (``---``, ``-x``) as an unknown option and ``--stop=--`` as an empty list.

    ``--stop`` takes one to four values after one flag (``--stop END STOP``) as well as repeated
    flags; the first value may start with a dash, the further ones may not (a dash word there
    is the next option: ``--stop END --stop -x`` sends both).
    """
    rest: list[str] = []
    taken: dict[str, list[str]] = {}
    i = 0
    while i < len(words):
        name, eq, value = words[i].partition("=")
        if name in options and (eq or i + 1 < len(words)):
            if not eq:
                i += 1
                value = words[i]
            values = [value]
            if name == "--stop" and not eq:
                while i + 1 < len(words) and not words[i + 1].startswith("-"):
                    i += 1
                    values.append(words[i])
                if len(values) > MAX_STOPS:
                    raise UsageError(
                        f"--stop takes one to {MAX_STOPS} values (the service's limit), not {len(values)}: "
                        f"drop some, e.g. --stop {' '.join(values[:2])}"
                    )
            taken.setdefault(name, []).extend(values)
        else:
            rest.append(words[i])
        i += 1
    return rest, taken


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` as newline, tab and backslash; anything else as typed."""
    return _ESCAPES.sub(lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


_ARGPARSE_VALUE = re.compile(r"argument (?P<opt>\S+): invalid (?P<kind>float|int) value: (?P<value>'.*')")


def option_error(message: str) -> str:
    """argparse's wording in the one style every option and setting mistake shares:
    ``bad option -t/--temperature: 'hot' is not a number``."""
    found = _ARGPARSE_VALUE.fullmatch(message.strip())
    if found:
        kind = "a number" if found["kind"] == "float" else "a whole number"
        return f"bad option {found['opt']}: {found['value']} is not {kind}"
    if message.startswith("argument "):
        return "bad option " + message[len("argument "):]
    return message if message.startswith("bad ") else f"bad option: {message}"


def parse_words(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """Parse words with a MagicArgumentParser (whose errors are UsageErrors), one line each."""
    try:
        return parser.parse_args(words)
    except UsageError as exc:
        raise UsageError(option_error(str(exc))) from None
    except SystemExit:  # argparse's own exit (e.g. -h): the help is already printed
        raise UsageError(f"see {parser.prog}? for the options") from None


def cell_params(args: argparse.Namespace, *, defaults: dict[str, Any]) -> dict[str, Any]:
    """The request parameters the options ask for, defaults filled from ``%pienteger config``.

    Only what was given (or configured) is returned, so the service's own defaults apply
    to the rest. ``--stop`` once gives a string, several give a list.
    """
    params: dict[str, Any] = {}
    temperature = args.temperature if args.temperature is not None else defaults.get("temperature")
    max_tokens = args.max_tokens if args.max_tokens is not None else defaults.get("max_tokens")
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if args.top_p is not None:
        params["top_p"] = args.top_p
    if args.n is not None:
        params["n"] = args.n
    if args.stop:
        stops = [unescape(s) for s in args.stop]
        params["stop"] = stops[0] if len(stops) == 1 else stops
    if args.suffix is not None:
        params["suffix"] = unescape(args.suffix)
    if args.echo:
        params["echo"] = True
    if args.logprobs is not None:
        params["logprobs"] = args.logprobs
    if args.seed is not None:
        params["seed"] = args.seed
    return params


def check_output_name(name: str | None) -> None:
    """``-o NAME`` must be a Python identifier (it becomes a variable)."""
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise UsageError(f"-o needs a variable name, got {name!r}")


def check_workflow(args: argparse.Namespace) -> None:
    """Refuse option mixes that cannot work; outside ``--compare`` one -m, -t, --seed each."""
    if args.compare:
        for flag in ("background", "insert", "dry_run"):
            if getattr(args, flag):
                raise UsageError(f"--compare runs now and shows a table: drop --{flag.replace('_', '-')}")
        return
    if args.background and args.insert:
        raise UsageError("--insert needs the answer while the cell runs: drop --background or --insert")
    if args.background and args.dry_run:
        raise UsageError("--dry-run sends nothing: drop --background")
    for name, flag in (("model", "-m"), ("temperature", "-t"), ("seed", "--seed")):
        values = getattr(args, name)
        if values is not None and len(values) > 1:
            raise UsageError(f"{flag} was given {len(values)} times: add --compare to run each side by side")
        setattr(args, name, values[0] if values else None)


def subcommand_parser(prog: str) -> argparse.ArgumentParser:
    """A parser for a subcommand's own options whose mistakes are one-line UsageErrors."""
    from IPython.core.magic_arguments import MagicArgumentParser

    return MagicArgumentParser(prog=prog, add_help=False)


def usage_parser() -> argparse.ArgumentParser:
    from ..ledger.views import BY_CHOICES  # made when %pienteger usage runs, not at %load_ext

    parser = subcommand_parser("%pienteger usage")
    parser.add_argument("--by", choices=BY_CHOICES, default=None)
    parser.add_argument("--since", default=None, help="ISO date/time, or e.g. 7d, 24h")
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--export", metavar="FILE", default=None)
    return parser


def emulator_parser() -> argparse.ArgumentParser:
    parser = subcommand_parser("%pienteger emulator")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--latency", type=float, default=None)
    parser.add_argument("--rpm", type=int, default=None)
    return parser


__all__ = [
    "FORMATS",
    "cell_params",
    "check_output_name",
    "check_workflow",
    "emulator_parser",
    "fill_words",
    "option_error",
    "parse_words",
    "split_line",
    "take_values",
    "unescape",
    "usage_parser",
]
