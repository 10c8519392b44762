"""A batch's estimate and its budget check, before anything is sent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..types import Estimate

if TYPE_CHECKING:  # pragma: no cover
    from ..client.client import Client


def row_estimates(client: Client, items: list[Any], todo: list[int], model: str | None,
                  params: dict[str, Any]) -> list[Estimate]:
    """Each prompt-to-do's worst case, in order (rows that are not strings fail without a call)."""
    return [client.estimate(items[i], model=model, **params) for i in todo if isinstance(items[i], str)]


def total(estimates: list[Estimate], model: str) -> Estimate:
    """The estimates summed into one; an empty batch costs nothing."""
    out = Estimate(0, 0, 0, 0.0, model)
    for one in estimates:
        out = out + one
    return out


__all__ = ["row_estimates", "total"]
