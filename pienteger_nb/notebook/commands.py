"""The ``%pienteger SUBCOMMAND`` line magics: models, usage, config, login, check, form,
emulator and help here; prices, budget, cache in ``spend_commands``; explain, jobs, stop in
``job_commands``. Each takes the ``PientegerMagics`` instance and the words after its name.
"""

from __future__ import annotations

import difflib
import getpass
import secrets
import time
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from .. import config
from ..errors import ConfigurationError, PientegerError
from .args import emulator_parser, fill_words, parse_words, split_line, usage_parser
from .command_kit import PientegerMagics, show, table_bundle
from .failures import CellFailure, describe
from .job_commands import cmd_explain, cmd_jobs, cmd_stop
from .spend_commands import cmd_budget, cmd_cache, cmd_prices


def cmd_models(magics: PientegerMagics, words: list[str]) -> None:
    if words:
        raise UsageError("%pienteger models takes no options")
    try:
        models = magics.client().models()
    except (PientegerError, ValueError) as exc:  # ValueError: settings a Client refuses
        raise magics.fail(exc, what="model list") from None
    magics.listed_models[str(config.get("base_url"))] = [m.id for m in models]
    default = config.get("model")
    rows = [(m.id, m.owned_by, "default" if m.id == default else "") for m in models]
    show(
        magics,
        table_bundle(["model", "owned by", ""], rows),
        {"pienteger": {"models": [m.id for m in models]}},
    )


def _setting(word: str) -> tuple[str, Any]:
    """(name, parsed value) for one ``name=value`` word; None clears; UsageError when a call
    would refuse the value (checked here, not at the next call)."""
    name, eq, value = word.partition("=")
    name = name.strip()
    if not eq:
        raise UsageError(f"expected name=value, got {name!r}; e.g. %pienteger config model=text-ada-001")
    try:  # check_name refuses the key without echoing what was typed
        if value == "":
            config.check_name(name)
            return name, None
        parsed = config.parse_setting(name, value)
        if name == "prices" and parsed is not None:
            from ..ledger.prices import read_file

            read_file(parsed)  # a bad file is refused now; the table in force stays
    except (ConfigurationError, ValueError) as exc:
        raise UsageError(f"bad setting {name}: {exc}") from None
    return name, parsed


def _warn_unlisted_model(magics: PientegerMagics, settings: list[tuple[str, Any]]) -> None:
    """A model the service did not list is set all the same (lists lag), but said at once,
    not at the next call's 404; only when the list is at hand (no call made here)."""
    model = next((value for name, value in settings if name == "model" and value), None)
    listed = magics.listed_models.get(str(config.get("base_url")))
    if model is None or not listed or model in listed:
        return
    near = difflib.get_close_matches(str(model), listed, n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    print(f"warning: model {model!r} is not in the service's list; {hint}%pienteger models lists them")


def cmd_config(magics: PientegerMagics, words: list[str]) -> None:
    # Every word is checked before any is set: a mistake changes nothing.
    settings = [_setting(word) for word in words]
    for name, value in settings:
        if value is None:
            config.clear_kernel(name)
        else:
            config.set_kernel(name, value)
    _warn_unlisted_model(magics, settings)
    rows = config.describe()
    if words:
        changed = {name for name, _ in settings}
        rows = [r for r in rows if r[0] in changed]
    show(magics, table_bundle(["setting", "value", "from"], rows))


def cmd_login(magics: PientegerMagics, words: list[str]) -> None:
    if words:
        raise UsageError("%pienteger login takes no arguments: it asks for the key with a hidden prompt")
    from IPython.core.error import StdinNotImplementedError

    try:
        key = getpass.getpass("Pienteger API key (hidden): ").strip()
    except StdinNotImplementedError:  # nbclient, jupyter execute: the front end cannot ask
        raise UsageError(
            "no key entered: this front end cannot ask for input; set PIENTEGER_API_KEY "
            "in the environment Jupyter starts from instead"
        ) from None
    except (KeyboardInterrupt, EOFError):
        raise UsageError("no key entered (interrupted); nothing changed") from None
    if not key:
        raise UsageError("no key entered; nothing changed")
    config.set_kernel_key(key)
    del key
    masked = config.api_key()[0]
    print(f"key set ({masked}) for this kernel only; it is not saved. %pienteger check tests it.")


def cmd_check(magics: PientegerMagics, words: list[str]) -> None:
    if words:
        raise UsageError("%pienteger check takes no arguments")
    key, origin = config.api_key()
    start = time.perf_counter()
    try:
        client = magics.client()
        client.require_key()
        models = client.models()
    except (PientegerError, ValueError) as exc:  # ValueError: settings a Client refuses
        if config.get("debug"):
            raise
        line = describe(exc, what="check").replace("Pienteger check failed: ", "", 1)
        raise CellFailure("check FAILED: " + line) from None
    ms = (time.perf_counter() - start) * 1000
    magics.listed_models[str(config.get("base_url"))] = [m.id for m in models]
    default = config.get("model")
    note = "" if any(m.id == default for m in models) else f"; note: default model {default} is not listed"
    print(
        f"check OK: {client.base_url} accepted key {key} ({origin}); "
        f"{len(models)} models in {ms:.0f} ms{note}"
    )


def cmd_usage(magics: PientegerMagics, words: list[str]) -> None:
    args = parse_words(usage_parser(), words)
    from .. import ledger  # pandas loads here, not with the extension
    from ..ledger.unrecorded import unrecorded_calls

    missing = unrecorded_calls()
    if missing.count:  # first: it stays true even when the ledger cannot be read either
        print(f"warning: {missing}")
    try:
        if args.export:
            path = ledger.export(args.export, since=args.since)
            print(f"usage rows written to {path}")
            return
        from ..ledger.backend import waiting_note

        waiting = waiting_note()  # rows the team ledger's server has not got yet
        if waiting:
            print(waiting)
        summary = ledger.usage_summary(by=args.by or "model", since=args.since)
        if len(summary) == 0:
            print("no calls recorded yet" + (f" since {args.since}" if args.since else ""))
            return
        import shutil

        import pandas as pd
        from IPython.display import display

        # In a terminal pandas fits the columns to the width by hiding them ("[2 rows x 8
        # columns]"): show them all, wrapped into blocks at the terminal's width instead.
        width = shutil.get_terminal_size().columns
        with pd.option_context("display.max_columns", None, "display.width", width):
            display(summary)
        if args.plot:
            ledger.plot(since=args.since)
    except (ValueError, ImportError) as exc:  # a --since it cannot read; no matplotlib/pyarrow
        raise UsageError(f"%pienteger usage: {exc}") from None
    except PientegerError as exc:
        raise magics.fail(exc, what="usage ledger") from None


def cmd_form(magics: PientegerMagics, words: list[str]) -> None:
    if words:
        raise UsageError("%pienteger form takes no arguments")
    try:
        from .form import PromptForm
    except ImportError as exc:
        print(f"the form is not available here: {exc}")
        return
    from IPython.display import display

    display(PromptForm())


def stop_emulator(magics: PientegerMagics) -> str | None:
    """Stop the emulator this kernel started and put the previous settings back; its URL."""
    emu, magics.emulator = magics.emulator, None
    if emu is None:
        return None
    emu.stop()
    base_url, key = magics._saved_settings or (None, None)
    magics._saved_settings = None
    # Only what still points at the emulator goes back: a login or a base_url set while it
    # ran is the user's newer choice.
    if config.lookup("base_url") == (emu.url, "kernel"):
        if base_url is None:
            config.clear_kernel("base_url")
        else:
            config.set_kernel("base_url", base_url)
    if config.api_key() == (config.Secret(emu.api_key), "kernel"):
        config.set_kernel_key(key)
    return str(emu.url)


def cmd_emulator(magics: PientegerMagics, words: list[str]) -> None:
    args = parse_words(emulator_parser(), words)
    if args.action == "status":
        print(f"emulator running at {magics.emulator.url}" if magics.emulator else "no emulator running")
        return
    if args.action == "stop":
        url = stop_emulator(magics)
        print(f"emulator at {url} stopped; settings restored" if url else "no emulator running")
        return
    if magics.emulator is not None:
        print(f"emulator already running at {magics.emulator.url}")
        return
    from ..emulator import Emulator

    options = {"tokens_per_second": args.tokens_per_second, "latency": args.latency, "rpm": args.rpm}
    emu = Emulator(
        api_key="pk-emu-" + secrets.token_hex(16), **{k: v for k, v in options.items() if v is not None}
    )
    emu.start()
    base_url, origin = config.lookup("base_url")
    key, key_origin = config.api_key()
    magics._saved_settings = (
        base_url if origin == "kernel" else None,
        key if key_origin == "kernel" else None,
    )
    magics.emulator = emu
    config.set_kernel("base_url", emu.url)
    config.set_kernel_key(emu.api_key)
    print(f"emulator running at {emu.url}; this kernel now uses it. %pienteger emulator stop goes back.")
    # Without this, a user takes the emulator's prose for what the model made of the prompt.
    print("Its answers are public-domain prose unrelated to the prompt (same at temperature 0): "
          "they show the plumbing, not a model.")


def cmd_help(magics: PientegerMagics, words: list[str]) -> None:
    print(magics.pienteger.__doc__)


SUBCOMMANDS: dict[str, Callable[[Any, list[str]], None]] = {
    "models": cmd_models,
    "usage": cmd_usage,
    "config": cmd_config,
    "login": cmd_login,
    "check": cmd_check,
    "form": cmd_form,
    "emulator": cmd_emulator,
    "prices": cmd_prices,
    "budget": cmd_budget,
    "cache": cmd_cache,
    "explain": cmd_explain,
    "jobs": cmd_jobs,
    "stop": cmd_stop,
    "help": cmd_help,
}


def run_subcommand(magics: PientegerMagics, line: str) -> None:
    """``%pienteger SUBCOMMAND ...``; an unknown one is a UsageError with a did-you-mean."""
    words = fill_words(split_line(line), getattr(magics.shell, "user_ns", None))
    if not words:
        cmd_help(magics, [])
        return
    name, rest = words[0], words[1:]
    command = SUBCOMMANDS.get(name)
    if command is None:
        near = difflib.get_close_matches(name, SUBCOMMANDS, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]}? " if near else ""
        raise UsageError(
            f"unknown subcommand {name!r}: {hint}known: {', '.join(SUBCOMMANDS)}. "
            "A prompt goes in a %%pienteger cell."
        )
    command(magics, rest)


__all__ = ["SUBCOMMANDS", "run_subcommand", "stop_emulator", "table_bundle"]
