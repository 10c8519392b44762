"""What a Client asks before and after a call about money: the spend policy.

The client may not know the ledger (the rooms' rule), so it asks a ``SpendPolicy`` held here:
how many characters make a prompt token for a model, what tokens cost, and, when a budget is
set, to reserve a call's worst case before sending and settle it after. The package points
the default policy at the ledger (``ledger.budget.LedgerSpend``) the first time it is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .types import CallRecord, Estimate

DEFAULT_CHARS_PER_TOKEN = 4.0


class SpendPolicy(Protocol):
    """Answers a Client's questions about cost; ``reserve`` may refuse with BudgetExceededError."""

    def chars_per_token(self, model: str) -> float: ...

    def cost(self, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None: ...

    def reserve(self, estimate: Estimate) -> Any:
        """Hold ``estimate``'s worst case against the budget (a ticket), None when no budget is set."""
        ...

    def settle(self, ticket: Any, record: CallRecord | None) -> None:
        """The call has ended (and been recorded): release its reservation."""
        ...

    def fits(self, estimates: list[Estimate]) -> None:
        """BudgetExceededError (saying how many fit) unless every one of these calls fits now."""
        ...


class NoSpendPolicy:
    """No prices, no budget: 4 characters a token, every model unpriced, nothing reserved."""

    def chars_per_token(self, model: str) -> float:
        return DEFAULT_CHARS_PER_TOKEN

    def cost(self, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        return None

    def reserve(self, estimate: Estimate) -> Any:
        return None

    def settle(self, ticket: Any, record: CallRecord | None) -> None:
        return None

    def fits(self, estimates: list[Estimate]) -> None:
        return None


_default: SpendPolicy | None = None
_factory: Callable[[], SpendPolicy] | None = None


def set_default_spend(policy: SpendPolicy | Callable[[], SpendPolicy] | None) -> None:
    """The policy Clients use when given none: a policy, or a function that makes it at first use."""
    global _default, _factory
    if policy is None or hasattr(policy, "reserve"):
        _default, _factory = policy, None  # type: ignore[assignment]
    else:
        _default, _factory = None, policy  # type: ignore[assignment]


def default_spend() -> SpendPolicy:
    """The policy in force (made now if only its factory was set)."""
    global _default, _factory
    if _default is None and _factory is not None:
        _default, _factory = _factory(), None
    return _default if _default is not None else NoSpendPolicy()


__all__ = ["DEFAULT_CHARS_PER_TOKEN", "NoSpendPolicy", "SpendPolicy", "default_spend", "set_default_spend"]
