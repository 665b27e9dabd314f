"""Wait or stop: how a request that failed is tried again, the same for a turn and for a summary.

Backoff doubles from ``backoff_base`` up to ``backoff_max``, with jitter so many agents do not retry
in lockstep; a service's ``retry-after`` is honoured up to ``retry_after_max``, and asking for more
ends the try instead (one line saying how long it asked for).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from midstream.tools.wire.model import FatalModelError, ModelError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries a request gets and how long to wait between them."""

    attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 300.0

    def after(self, attempt: int, error: ModelError) -> tuple[ModelError, float | None]:
        """The error as the person should see it, and the wait before the next try (None: stop here)."""
        if (error.retry_after or 0.0) > self.retry_after_max:
            error = _too_long_a_wait(error)
        if attempt >= self.attempts or not error.retryable:
            return error, None
        return error, self.delay(attempt, error.retry_after)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        # The exponent is capped: past ~1,000 tries 2 ** n no longer fits a float (--max-attempts is the person's).
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt - 1, 64))
        delay *= random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)


def _too_long_a_wait(error: ModelError) -> ModelError:
    """The service asked for a wait beyond ``retry_after_max``: end the try and say so."""
    wait = error.retry_after or 0.0
    asked = "an unbounded time" if wait == float("inf") else (
        f"{wait:,.0f} s" if wait < 3600 else f"{wait / 3600:,.1f} h")
    return FatalModelError(f"{error} · the service asked to wait {asked} before retrying; try again later",
                           status=error.status, retry_after=error.retry_after)
