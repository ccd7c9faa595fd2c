"""How long a connector waits before trying a transient failure again."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, retry_after: float | None, max_backoff_s: float, rng: random.Random) -> float:
    """Seconds before retry ``attempt`` (from 0): what the server asked for (``Retry-After``,
    at most 5 minutes), else exponential from 0.5 s up to ``max_backoff_s``, with jitter (half
    to all of it) so that many clients do not come back at once."""
    if retry_after is not None:
        return min(retry_after, 300.0)
    return min(max_backoff_s, 0.5 * 2**attempt) * (0.5 + rng.random() / 2)
