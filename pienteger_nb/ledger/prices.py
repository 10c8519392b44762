"""Prices in force and what tokens cost.

A minimal stand-in: the spend work brings the table (``set_prices``, ``PIENTEGER_PRICES``);
until then every model is unpriced, and ``cost_usd`` is the one name the rest of the code uses.
"""

from __future__ import annotations

# model -> (prompt, completion) USD per 1,000 tokens
_PRICES: dict[str, tuple[float, float]] = {}


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these tokens at the prices in force; None when the model is unpriced."""
    price = _PRICES.get(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1000


__all__ = ["cost_usd"]
