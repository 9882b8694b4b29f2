"""Exponential back-off with jitter, shared by the device uploader and the hub's PACS forwarder.

Why jitter: after a clinic's link comes back, every camera behind it would
otherwise retry in the same second and knock the hub over again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before the next attempt: ``first`` doubling up to ``cap`` seconds, +-``jitter`` of it."""

    first: float = 1.0
    cap: float = 300.0
    jitter: float = 0.25
    failures: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self) -> float:
        if self.failures == 0:
            return 0.0
        base = min(self.cap, self.first * 2 ** (self.failures - 1))
        return max(0.0, base * (1 + self.jitter * (2 * self._rng.random() - 1)))

    def failed(self) -> float:
        """Record a failure; returns the delay to wait before trying again."""
        self.failures += 1
        return self.delay()

    def succeeded(self) -> None:
        self.failures = 0
