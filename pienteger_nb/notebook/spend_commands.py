"""``%pienteger prices``, ``budget`` and ``cache``: what calls cost, the limit, stored answers."""

from __future__ import annotations

from IPython.core.error import UsageError

from .. import config
from ..errors import PientegerError
from .command_kit import PientegerMagics, show, table_bundle


def cmd_prices(magics: PientegerMagics, words: list[str]) -> None:
    if words:
        raise UsageError("%pienteger prices takes no options; set them with set_prices({...}) or "
                         "%pienteger config prices=FILE")
    from ..ledger.prices import table_in_force

    table = table_in_force()
    if not table:
        print("No prices set: every model is unpriced. Use pienteger_nb.set_prices({\"model\": 0.02}) "
              "or %pienteger config prices=FILE (JSON, USD per 1K tokens).")
        return
    rows = [(m, f"{p:g}", f"{c:g}") for m, (p, c) in sorted(table.items())]
    show(magics, table_bundle(["model", "prompt (USD/1K)", "completion (USD/1K)"], rows),
          {"pienteger": {"prices": {m: {"prompt": p, "completion": c} for m, (p, c) in table.items()}}})


def cmd_budget(magics: PientegerMagics, words: list[str]) -> None:
    from ..ledger.budget import describe_status, parse_budget, set_budget

    how = ("e.g. %pienteger budget 5 --per day, %pienteger budget 20 --per month --scope team, "
           "%pienteger budget 200000tokens --per month, %pienteger budget off")
    if words == ["off"]:
        set_budget(None)
        print("Budget off: calls are not limited.")
        return
    if words:
        amount, options, rest = words[0], {"--per": "day", "--scope": "user"}, words[1:]
        while rest[:1] and rest[0] in options and len(rest) >= 2:
            options[rest[0]], rest = rest[1], rest[2:]
        if rest:
            raise UsageError(f"%pienteger budget: unexpected {' '.join(rest)!r}; {how}")
        text = amount if "/" in amount else f"{amount}/{options['--per']}"
        if text.count("/") < 2:
            text += f"/{options['--scope']}"
        try:
            budget = parse_budget(text)
        except ValueError as exc:
            raise UsageError(f"{exc}; {how}") from None
        if budget is None:
            set_budget(None)
        else:
            set_budget(budget.usd, tokens=budget.tokens, per=budget.per, scope=budget.scope)
    try:
        print(describe_status())
    except PientegerError as exc:
        raise UsageError(str(exc)) from None


def cmd_cache(magics: PientegerMagics, words: list[str]) -> None:
    """``%pienteger cache``: what the replay cache holds and saved; ``cache clear`` empties it."""
    from ..ledger.default import cache_stats, clear_cache
    from ..ledger.store import UsageLogError

    if words not in ([], ["clear"]):
        raise UsageError("usage: %pienteger cache (what is stored and saved) or %pienteger cache clear")
    try:
        if words:
            removed = clear_cache()
            print(f"Replay cache cleared: {removed:,} stored answer{'s' if removed != 1 else ''} removed.")
            return
        stats = cache_stats()
    except UsageLogError as exc:
        raise magics.fail(exc, what="replay cache") from None
    setting = {True: "on", False: "off"}.get(config.get("cache"), "auto")
    show(magics, {"text/plain": f"{stats} (cache={setting})"},
          {"pienteger": {"cache": {**stats.as_dict(), "setting": setting}}})


__all__ = ["cmd_budget", "cmd_cache", "cmd_prices"]
