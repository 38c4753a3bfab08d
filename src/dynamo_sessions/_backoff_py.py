"""The twin's lock-retry backoff schedule (a seedable splitmix64 stream, so that both twins draw
the same delays from the same seed).

Part of the pure-Python twin; ``LockRetryBackoff`` is re-exported by ``_core_py`` (import it from
there, or from ``_core``).  The compiled counterpart is ``ext/_backoff.pxi``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._rules import MASK64, backoff_settings, backoff_state, documented


@documented
class LockRetryBackoff:
    attempt: int  # set by start()
    deadline: float
    slept_seconds: float

    def __init__(
        self,
        min_retry_microseconds: int = 10_000,
        max_retry_microseconds: int = 50_000,
        max_wait_seconds: float = 10.0,
        mode: str = "exponential",
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        (self.min_retry_microseconds, self.max_retry_microseconds, self.max_wait_seconds,
         self.mode, self._exponential) = backoff_settings(
            min_retry_microseconds, max_retry_microseconds, max_wait_seconds, mode)
        self._state = backoff_state(seed)
        self._clock, self._sleep = clock, sleep
        self.start()

    def _next_random(self) -> int:
        # splitmix64
        self._state = (self._state + 0x9E3779B97F4A7C15) & MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def start(self) -> None:
        """Begin a new wait: reset the attempt count and set the deadline from now."""
        self.attempt = 0
        self.slept_seconds = 0.0
        self.deadline = self._clock() + self.max_wait_seconds

    def next_delay_microseconds(self) -> int:
        """Draw the next delay (microseconds) of the schedule and count the attempt."""
        low = self.min_retry_microseconds
        high = self.max_retry_microseconds
        if self._exponential and self.attempt < 62:
            high = min(high, low << self.attempt) if low else high
        self.attempt += 1
        return low + self._next_random() % (high - low + 1)

    def remaining_seconds(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - self._clock())

    def wait(self) -> bool:
        """Sleep before the next attempt; ``False`` (without sleeping) once the deadline passed.

        The sleep is the next delay of the schedule, cut so that it ends at the deadline.
        """
        remaining = self.deadline - self._clock()
        if remaining <= 0:
            return False
        delay = min(self.next_delay_microseconds() / 1_000_000, remaining)
        self._sleep(delay)
        self.slept_seconds += delay
        return True

