"""Budgets: a limit on USD or tokens per session, UTC day, UTC month or in total, that holds.

Before a call is sent its worst case is reserved: in one atomic step the ledger's running total
for the period (kept as rows are written, so nothing is scanned) plus the reservations of calls
still running plus this call's worst case must fit the limit, and the reservation is written.
Threads, processes and (on PostgreSQL) hosts sharing the ledger take turns on that step
(``spendbook.py``: a ``BEGIN IMMEDIATE`` transaction on SQLite, ``pgbudget.py``: an advisory
lock on PostgreSQL), so together they cannot pass the budget. When the call ends its row is
recorded first and then the reservation deleted. A process killed mid-call leaves its
reservation behind; it expires after ``RESERVATION_TTL_S`` so it cannot block for ever.

``scope="user"`` (the default) counts the spending and reservations of this user (the rows'
``user`` column: ``JUPYTERHUB_USER``, else the login name); ``scope="team"`` everyone's who
shares the ledger. A ``"session"`` budget counts this kernel's calls only, in memory.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BudgetExceededError, ConfigurationError
from ..spend import DEFAULT_CHARS_PER_TOKEN
from ..types import CallRecord, Estimate
from .default import default_log
from .prices import cost_usd
from .schema import call_user
from .spendbook import Amounts, SpendBook, SqliteSpendBook
from .store import UsageLog

PERIODS = ("session", "day", "month", "total")
SCOPES = ("user", "team")
RESERVATION_TTL_S = 600.0
_RATIO_TTL_S = 5.0  # how long a model's characters-per-token ratio is reused before it is read again
_WHEN = {"session": "in this session", "day": "today (UTC)", "month": "this month (UTC)", "total": "in total"}


@dataclass(frozen=True)
class Budget:
    """A limit: ``usd`` and/or ``tokens`` per ``per`` ("session", "day", "month", "total"),
    for this ``scope`` ("user" or "team")."""

    usd: float | None
    tokens: int | None
    per: str
    scope: str = "user"

    def describe(self) -> str:
        parts = ([_usd(self.usd)] if self.usd is not None else []) + (
            [f"{self.tokens:,} tokens"] if self.tokens is not None else [])
        whose = "" if self.per == "session" else f" for {'the team' if self.scope == 'team' else 'this user'}"
        return f"{' and '.join(parts)} per {self.per}{whose}"


def make_budget(usd: Any = None, *, tokens: Any = None, per: str = "day", scope: str = "user") -> Budget | None:
    """A checked Budget (None when both limits are None); ValueError in one line otherwise."""
    if per not in PERIODS:
        raise ValueError(f"per={per!r}: choose one of {', '.join(PERIODS)}")
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}: choose 'user' (this user's calls) or 'team' (everyone sharing the ledger)")
    if usd is not None:
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd) or usd < 0:
            raise ValueError(f"budget usd={usd!r}: give a number of US dollars >= 0, e.g. set_budget(5)")
        usd = float(usd)
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        raise ValueError(f"budget tokens={tokens!r}: give a whole number >= 0, e.g. set_budget(tokens=200000)")
    if usd is None and tokens is None:
        return None
    return Budget(usd, tokens, per, scope)


_TEXT = re.compile(
    r"^\s*\$?\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*(usd|\$|tokens?)?\s*(?:/|per)\s*([a-z]+)\s*(?:/\s*([a-z]+)\s*)?$",
    re.IGNORECASE,
)


def parse_budget(text: str) -> Budget | None:
    """``"5/day"``, ``"$5/month"``, ``"200000tokens/month"``, ``"5/day/team"`` (scope last:
    ``user``, the default, or ``team``); ``"off"``/``""`` is None."""
    if text.strip().lower() in ("", "off", "none"):
        return None
    match = _TEXT.match(text)
    if not match:
        raise ValueError(f"budget {text!r}: write it like 5/day, 20/month/team or 200000tokens/month "
                         f"(periods: {', '.join(PERIODS)}; scopes: {', '.join(SCOPES)})")
    amount, unit, per = match.group(1).replace(",", "").replace("_", ""), (match.group(2) or "").lower(), match.group(3).lower()
    scope = (match.group(4) or "user").lower()
    if unit.startswith("token"):
        if "." in amount:
            raise ValueError(f"budget {text!r}: tokens are a whole number")
        return make_budget(tokens=int(amount), per=per, scope=scope)
    return make_budget(float(amount), per=per, scope=scope)


_OFF = "off"
_explicit: Budget | str | None = None  # None: not set in this kernel (PIENTEGER_BUDGET decides)
_env_cache: tuple[str, Budget | None] | None = None


def set_budget(usd: float | None = None, *, tokens: int | None = None, per: str = "day",
               scope: str = "user") -> None:
    """Refuse calls in this kernel that could pass ``usd`` (US dollars) or ``tokens`` per ``per``.

    ``per``: "session" (this kernel's calls), "day" or "month" (UTC) or "total", counted on the
    spending recorded in the shared ledger: this user's (``scope="user"``, the rows' ``user``)
    or everyone's sharing it (``scope="team"``). A new budget replaces the old;
    ``set_budget(None)`` turns it off (also over ``PIENTEGER_BUDGET``).
    """
    global _explicit
    budget = make_budget(usd, tokens=tokens, per=per, scope=scope)
    _explicit = budget if budget is not None else _OFF
    if budget is not None and budget.per == "session":
        _session.start()


def current_budget() -> Budget | None:
    """The budget in force: ``set_budget``'s, else ``PIENTEGER_BUDGET``'s, else None."""
    global _env_cache
    explicit = _explicit
    if explicit is not None:
        return None if explicit == _OFF else explicit  # type: ignore[return-value]
    raw = os.environ.get("PIENTEGER_BUDGET", "")
    if _env_cache is not None and _env_cache[0] == raw:
        return _env_cache[1]
    try:
        parsed = parse_budget(raw)
    except ValueError as exc:
        raise ConfigurationError(f"PIENTEGER_BUDGET: {exc}") from None
    _env_cache = (raw, parsed)
    return parsed


def period_key(per: str, now_s: float) -> str:
    when = _dt.datetime.fromtimestamp(now_s, _dt.UTC)
    return {"day": f"day:{when:%Y-%m-%d}", "month": f"month:{when:%Y-%m}"}.get(per, "total")


class _Session:
    """This kernel's spending since its session budget was set, and its calls running now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.usd, self.tokens, self.held_usd, self.held_tokens = 0.0, 0, 0.0, 0

    def start(self) -> None:
        with self.lock:  # a new session budget counts from now (calls running now stay held)
            self.usd, self.tokens = 0.0, 0


_session = _Session()


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:g}"


def _money(value: float, unit: str) -> str:
    return f"${value:,.4f}" if unit == "usd" else f"{int(value):,} tokens"


def _refusal(budget: Budget, unit: str, spent: float, held: float, worst: float, what: str = "this call",
             fits: str = "") -> BudgetExceededError:
    limit = budget.usd if unit == "usd" else budget.tokens
    assert limit is not None
    raise_to = spent + held + worst
    suggestion = (f"{math.ceil(raise_to * 100) / 100:g}" if unit == "usd" else f"tokens={math.ceil(raise_to)}")
    magic = f"{math.ceil(raise_to * 100) / 100:g}" if unit == "usd" else f"{math.ceil(raise_to)}tokens"
    running = f" (+{_money(held, unit)} held by calls running now)" if held else ""
    whose = "" if budget.per == "session" else (" by the team" if budget.scope == "team" else " by this user")
    message = (f"budget: spent {_money(spent, unit)}{running} of {_money(limit, unit)}{whose} {_WHEN[budget.per]}; "
               f"{what} could cost up to {_money(worst, unit)}{fits}")
    team = budget.scope == "team" and budget.per != "session"
    advice = (f"raise it with set_budget({suggestion}, per={budget.per!r}{', scope=' + repr('team') if team else ''}) "
              f"or %pienteger budget {magic} --per {budget.per}{' --scope team' if team else ''}")
    return BudgetExceededError(message, spent=spent, limit=float(limit), worst_case=worst, unit=unit, advice=advice)


def _unpriced(model: str) -> BudgetExceededError:
    return BudgetExceededError(
        f"budget in USD, but {model or 'the model'} has no price, so the call cannot be checked against it",
        advice=f"set its price with set_prices({{{model!r}: USD_PER_1K}}) or use a token budget: set_budget(tokens=N)",
    )


@dataclass
class _Ticket:
    book: SpendBook | None  # None: a session reservation
    row_id: int
    usd: float
    tokens: int


class LedgerSpend:
    """The SpendPolicy the package wires into Clients: the ledger's ratios, prices and budget.

    ``log`` is the ledger (default: the default ledger, followed when its path changes),
    ``clock`` gives wall seconds (reservations' expiry), ``ttl_s`` how long a reservation of
    a crashed process blocks.
    """

    def __init__(self, log: UsageLog | Callable[[], UsageLog] | None = None, *,
                 clock: Callable[[], float] = time.time, ttl_s: float = RESERVATION_TTL_S,
                 budget: Callable[[], Budget | None] = current_budget):
        self._log = log if log is not None else default_log
        self.clock = clock
        self.ttl_s = ttl_s
        self.budget = budget
        self._ratios: dict[tuple[str, str], tuple[float, float]] = {}

    def ledger(self) -> UsageLog:
        # A ledger (SQLite or the team's) has ``record``; a function that finds one does not.
        return self._log if hasattr(self._log, "record") else self._log()  # type: ignore[operator,return-value]

    def _book(self) -> tuple[str, SpendBook]:
        """(where, the spend book) of the ledger: its SQLite file or the team's database."""
        log = self.ledger()
        if isinstance(log, UsageLog):
            return log.path, SqliteSpendBook(log)
        from .pgbudget import PostgresSpendBook

        return log.path, PostgresSpendBook(log)  # type: ignore[arg-type]

    # -- estimates --------------------------------------------------------------------------
    def chars_per_token(self, model: str) -> float:
        where, book = self._book()
        now = time.monotonic()
        cached = self._ratios.get((where, model))
        if cached is not None and now - cached[1] < _RATIO_TTL_S:
            return cached[0]
        try:
            seen = book.prompt_ratio(model)
        except BudgetExceededError:  # the team ledger is down: estimate as with no history
            seen = None
        ratio = seen[0] / seen[1] if seen and seen[1] > 0 else DEFAULT_CHARS_PER_TOKEN
        self._ratios[(where, model)] = (ratio, now)
        return ratio

    def cost(self, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        return cost_usd(model, prompt_tokens, completion_tokens)

    # -- budgets ----------------------------------------------------------------------------
    def _needs(self, budget: Budget, estimate: Estimate) -> list[tuple[str, float]]:
        needs: list[tuple[str, float]] = []
        if budget.usd is not None:
            if estimate.cost_max is None:
                raise _unpriced(estimate.model)
            needs.append(("usd", estimate.cost_max))
        if budget.tokens is not None:
            needs.append(("tokens", float(estimate.max_tokens)))
        return needs

    def status(self) -> tuple[Budget | None, float, int, float, int]:
        """(budget, spent USD, spent tokens, held USD, held tokens) for the budget's period now."""
        budget = self.budget()
        if budget is None:
            return None, 0.0, 0, 0.0, 0
        if budget.per == "session":
            with _session.lock:
                return budget, _session.usd, _session.tokens, _session.held_usd, _session.held_tokens
        now = self.clock()
        spent, held = self._book()[1].read(period_key(budget.per, now), _who(budget), int(now * 1e6))
        return budget, spent[0], int(spent[1]), held[0], int(held[1])

    def reserve(self, estimate: Estimate, *, what: str = "this call") -> Any:
        budget = self.budget()
        if budget is None:
            return None
        needs = self._needs(budget, estimate)
        usd = estimate.cost_max or 0.0
        tokens = estimate.max_tokens
        if budget.per == "session":
            with _session.lock:
                have = {"usd": (_session.usd, _session.held_usd), "tokens": (_session.tokens, _session.held_tokens)}
                self._check(budget, needs, have, what)
                _session.held_usd += usd
                _session.held_tokens += tokens
            return _Ticket(None, 0, usd, tokens)
        book = self._book()[1]
        now = self.clock()

        def check(spent: Amounts, held: Amounts) -> Exception | None:
            have = {"usd": (spent[0], held[0]), "tokens": (spent[1], held[1])}
            try:
                self._check(budget, needs, have, what)
            except BudgetExceededError as refusal:
                return refusal
            return None

        row_id = book.hold(period_key(budget.per, now), _who(budget), call_user(), usd, tokens,
                           int(now * 1e6), int((now + self.ttl_s) * 1e6), check)
        return _Ticket(book, row_id, usd, tokens)

    @staticmethod
    def _check(budget: Budget, needs: list[tuple[str, float]], have: dict[str, tuple[float, float]],
               what: str) -> None:
        for unit, worst in needs:
            limit = budget.usd if unit == "usd" else budget.tokens
            spent, held = have[unit]
            assert limit is not None
            # A little slack for float sums of many small costs: a call that exactly fits, fits.
            if spent + held + worst > limit * (1 + 1e-9) + 1e-12:
                raise _refusal(budget, unit, spent, held, worst, what)

    def settle(self, ticket: Any, record: CallRecord | None) -> None:
        if not isinstance(ticket, _Ticket):
            return
        if ticket.book is None:
            cost = 0.0
            tokens = 0
            if record is not None and not record.cached:
                cost = cost_usd(record.model, record.prompt_tokens, record.completion_tokens) or 0.0
                tokens = record.total_tokens or 0
            with _session.lock:
                _session.held_usd -= ticket.usd
                _session.held_tokens -= ticket.tokens
                _session.usd += cost
                _session.tokens += tokens
            return
        ticket.book.release(ticket.row_id)

    def fits(self, estimates: list[Estimate]) -> None:
        """BudgetExceededError, saying how many rows fit, unless every row's worst case fits now."""
        budget = self.budget()
        if budget is None or not estimates:
            return
        total = estimates[0]
        for one in estimates[1:]:
            total = total + one
        needs = self._needs(budget, total)
        _, spent_usd, spent_tokens, held_usd, held_tokens = self.status()
        have = {"usd": (spent_usd, held_usd), "tokens": (float(spent_tokens), float(held_tokens))}
        for unit, worst in needs:
            limit = budget.usd if unit == "usd" else budget.tokens
            assert limit is not None
            spent, held = have[unit]
            if spent + held + worst <= limit * (1 + 1e-9) + 1e-12:
                continue
            left, fit = limit - spent - held, 0
            for one in estimates:
                cost = (one.cost_max or 0.0) if unit == "usd" else float(one.max_tokens)
                if cost > left:
                    break
                left -= cost
                fit += 1
            rows = f"{total.rows:,} prompts"
            raise _refusal(budget, unit, spent, held, worst, what=f"this batch of {rows}",
                           fits=f": {fit:,} of them would fit; nothing was sent")


def _who(budget: Budget) -> str | None:
    """Whose spending a budget counts: None for the team, else this user's name."""
    return None if budget.scope == "team" else call_user()


def describe_status(policy: LedgerSpend | None = None) -> str:
    """``%pienteger budget``: one line of spent / limit, or that no budget is set."""
    budget, usd, tokens, held_usd, held_tokens = (policy or LedgerSpend()).status()
    if budget is None:
        return "No budget set: calls are not limited. Set one with %pienteger budget 5 --per day."
    parts = []
    if budget.usd is not None:
        parts.append(f"${usd:,.4f} of {_usd(budget.usd)}")
    if budget.tokens is not None:
        parts.append(f"{tokens:,} of {budget.tokens:,} tokens")
    held = f" ({_money(held_usd, 'usd')} / {held_tokens:,} tokens held by calls running now)" if held_tokens else ""
    return f"budget {budget.describe()}: spent {' and '.join(parts)} {_WHEN[budget.per]}{held}."


__all__ = ["PERIODS", "RESERVATION_TTL_S", "SCOPES", "Budget", "LedgerSpend", "current_budget", "describe_status",
           "make_budget", "parse_budget", "set_budget"]
