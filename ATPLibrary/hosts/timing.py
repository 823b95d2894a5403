"""Deadlines, growing poll intervals, reconnect backoff and readable durations.

Plain Python shared by the protocol clients; injectable clocks keep it testable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def format_seconds(seconds: float) -> str:
    """A readable duration: ``"30 seconds"``, ``"1 minute 30 seconds"``, ``"250 ms"``."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        text = f"{seconds:.2f}".rstrip("0").rstrip(".")
        return f"{text} second" + ("" if text == "1" else "s")
    minutes, rest = divmod(seconds, 60)
    parts = [f"{int(minutes)} minute" + ("" if int(minutes) == 1 else "s")]
    if rest:
        parts.append(format_seconds(rest))
    return " ".join(parts)


class Deadline:
    """A point in time ``timeout`` seconds from now."""

    def __init__(self, timeout: float, clock: Clock = time.monotonic) -> None:
        self.timeout = max(0.0, float(timeout))
        self._clock = clock
        self.start = clock()
        self.end = self.start + self.timeout

    def remaining(self) -> float:
        return max(0.0, self.end - self._clock())

    def elapsed(self) -> float:
        return self._clock() - self.start

    @property
    def expired(self) -> bool:
        return self._clock() >= self.end

    def agent_timeout(self, cap: float = 10.0) -> int:
        """Whole seconds (>= 1) for a libvirt agent call that should not outlive this deadline."""
        return max(1, min(math.ceil(self.remaining()), math.ceil(cap)))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial``, ``initial*factor``, ... capped at ``cap`` seconds."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 8.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield min(delay, self.cap)
            delay = min(delay * self.factor, self.cap)


POLL_INITIAL = 0.01
POLL_FACTOR = 1.5
POLL_CAP = 0.2


def poll_intervals(
    initial: float = POLL_INITIAL, factor: float = POLL_FACTOR, cap: float = POLL_CAP
) -> Iterator[float]:
    """Intervals for polling: start small (~10 ms) and grow to ``cap`` (~200 ms)."""
    return Backoff(initial, factor, cap).delays()
