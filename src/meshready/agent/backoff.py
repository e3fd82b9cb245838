"""Retry delays with jitter, and a jittered check interval.

Thousands of agents share one API server: after an outage they must not all retry, or re-check,
in the same second. Retries grow exponentially up to a cap, each delay drawn at random from its
upper half ("equal jitter"); the check timer varies by a fraction either way.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self, base: float = 0.5, cap: float = 60.0, rng: Callable[[], float] = random.random
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the ceiling, up to the cap."""
        ceiling = min(self.cap, self.base * (2.0**self.attempt))
        self.attempt = min(self.attempt + 1, 62)
        return ceiling / 2 + self.rng() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


def jittered(interval: float, fraction: float, rng: Callable[[], float] = random.random) -> float:
    """INTERVAL varied uniformly by +-FRACTION (0.2: between 0.8 and 1.2 times)."""
    fraction = max(0.0, min(fraction, 0.9))
    return interval * (1.0 + fraction * (2.0 * rng() - 1.0))
