"""What a Client asks before sending: a stored answer to replay, else a budget reservation.

A replay costs nothing, so it reserves nothing; a reservation is settled to the real cost once
the call's ledger row is written.
"""

from __future__ import annotations

import logging
from typing import Any

from ..replay import CacheSetting, ReplayStore, default_replay, key_for, parse_cache_setting
from ..spend import SpendPolicy, default_spend
from ..types import CallRecord, Completion
from .estimate import estimate_body
from .results import CallState

log = logging.getLogger("pienteger_nb")


class CallGate:
    """``Client``'s replay cache and budget checks (a base class, like ``RequestLoop``)."""

    base_url: str
    cache: CacheSetting
    replay: ReplayStore | None
    spend: SpendPolicy | None

    @property
    def spend_policy(self) -> SpendPolicy:
        """The policy this client asks about prices and budgets (its own, else the package's)."""
        return self.spend if self.spend is not None else default_spend()

    def _reserve(self, body: dict[str, Any]) -> tuple[SpendPolicy, Any]:
        """Hold the call's worst case against the budget (BudgetExceededError: nothing is sent)."""
        policy = self.spend_policy
        return policy, policy.reserve(estimate_body(body, policy))

    def _settle(self, policy: SpendPolicy, ticket: Any, record: CallRecord | None) -> None:
        if ticket is None:
            return
        try:
            policy.settle(ticket, record)
        except Exception as exc:  # noqa: BLE001 - an unsettled reservation expires; the call stands
            log.warning("settling the budget reservation failed: %s: %s", type(exc).__name__, exc)

    def _stored(self, body: dict[str, Any], call: CallState, cache: CacheSetting | str | None,
                refresh: bool) -> Completion | None:
        """The stored answer to replay for this request, if any; sets the call's cache key so a
        fresh answer is stored (replacing the old one with ``refresh``)."""
        setting = self.cache if cache is None else parse_cache_setting(cache)
        call.cache_key = key_for(setting, self.base_url, body)
        if call.cache_key is None or refresh:
            return None
        store = self.replay or default_replay()
        if store is None:
            return None
        try:
            answer = store.lookup(call.cache_key)
        except Exception as exc:  # noqa: BLE001 - a broken store costs a call, never the answer
            log.warning("the replay cache could not be read (%s: %s); calling the service",
                        type(exc).__name__, exc)
            return None
        if answer is not None:
            call.cached = True
        return answer


__all__ = ["CallGate"]
