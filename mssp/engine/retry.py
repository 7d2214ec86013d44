"""Capped, jittered exponential backoff for connection retries (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n))."""

    base: float = 0.5
    """Seconds of the first ceiling."""
    cap: float = 10.0
    """Largest wait, whatever the attempt."""

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt)))
        return (rng or random).uniform(0, ceiling)


def should_retry(error: BaseException, attempt: int, retries: int) -> bool:
    """Retry only connection errors that say they are transient, and only ``retries`` times.

    Authentication and host key errors say ``retryable = False`` and are never retried.
    """
    from mssp.errors import ConnectError

    return isinstance(error, ConnectError) and error.retryable and attempt < retries
