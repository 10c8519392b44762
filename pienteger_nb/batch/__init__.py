"""The batch room: many prompts at once, paced to the service's limits.

``complete_many`` (``run``) returns a DataFrame aligned with its input (``frame``); a shared
``RateLimiter`` (``pacing``) paces the workers; ``progress`` shows a bar or a terminal line;
``comparison`` (``compare``) runs one prompt over models and settings;
``accessor`` registers ``df.pienteger`` / ``s.pienteger`` when this room is imported.

May import: ``client``, ``ledger``, the shared leaves and pandas. Never the notebook room
(magics, forms): those sit on top of this one.
"""

from __future__ import annotations

from . import accessor  # noqa: F401  (registers df.pienteger)
from .comparison import compare
from .run import complete_many

__all__ = ["compare", "complete_many"]
