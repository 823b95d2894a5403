"""In-process collection of verification latencies for the results archive.

The verification matcher calls :func:`record_latency` each time a verified input succeeds.  While no archive
listener is active in this process the call returns at once and keeps nothing; while one is active (it calls
:func:`activate`), the measurements wait here until the listener takes them with :func:`drain` at the end of each
test.  Plain Python and thread-safe: the matcher runs on the verification server's loop thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["LatencySample", "activate", "active", "deactivate", "drain", "record_latency"]

#: At most this many samples wait between two drains; older ones are dropped (a test with a runaway loop of
#: verified input must not grow the process without bound).
MAX_PENDING = 100_000


@dataclass(frozen=True)
class LatencySample:
    """One verified input: the VM, its latency in milliseconds, the kind of events (``key``, ``button+abs``, ...),
    the action (e.g. ``Type Text``) and when it was measured (seconds since the epoch)."""

    vm: str
    latency_ms: float
    kind: str
    action: str
    at: float


_lock = threading.Lock()
_listeners = 0
_pending: list[LatencySample] = []


def activate() -> None:
    """An archive listener starts collecting in this process (calls nest: each needs its :func:`deactivate`)."""
    global _listeners
    with _lock:
        _listeners += 1


def deactivate() -> None:
    """An archive listener stops collecting; with the last one gone, pending samples are dropped."""
    global _listeners
    with _lock:
        _listeners = max(0, _listeners - 1)
        if not _listeners:
            _pending.clear()


def active() -> bool:
    """Whether an archive listener collects latencies in this process."""
    return _listeners > 0


def record_latency(vm: str, ms: float, kind: str, action: str = "") -> None:
    """Keep one verification latency for the archive; does nothing when no archive listener is active."""
    if not _listeners:  # the common case: one int test, no lock, nothing kept
        return
    sample = LatencySample(str(vm), float(ms), str(kind), str(action), time.time())
    with _lock:
        if _listeners:
            if len(_pending) >= MAX_PENDING:
                del _pending[0]
            _pending.append(sample)


def drain() -> list[LatencySample]:
    """Take every sample recorded since the last drain (oldest first)."""
    with _lock:
        taken = _pending[:]
        _pending.clear()
    return taken
