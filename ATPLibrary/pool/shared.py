"""VM leases shared by every process that talks to one PabotLib server, on any machine: leases that expire.

A lease is a record in a PabotLib parallel value, ``atp-pool:<host>:lease:<vm>``::

    {"token": "…", "machine": "…", "pid": 123, "pid_start": "…", "run": "…", "scope": "…",
     "since": 1700000000.0, "expires": 1700000060.0}

(``""`` when free).  Every read-modify-write of records runs under one PabotLib lock per libvirt host, and that
lock is released in ``finally`` whatever happens in between (failure kind 10: a lock held by a failed test
must never block the others).  The lock is only held for a few XML-RPC calls (milliseconds).

- **Expiry**: a record whose ``expires`` (wall clock, seconds since the epoch) has passed is free: another
  process takes it.  That is how the VMs of a machine that died, or of a process killed with SIGKILL on
  another machine, come back.  A record of a process on *this* machine whose PID is gone is free at once.
- **Heartbeat**: a daemon thread renews the held records every ``heartbeat`` seconds (and this process's
  liveness key ``atp-pool:alive:<caller>``, read by the in-guest lease's stale rule).  A renewal that finds
  the record gone or owned by another token marks the lease *lost*; so does failing to reach the server until
  the lease's own expiry.  The pool keywords then fail loudly.
- **A lock whose holder died between taking and releasing it** (SIGKILL in those milliseconds): PabotLib
  locks never expire.  Each holder writes ``atp-pool:<host>:mutex-owner:<epoch>`` right after taking the
  lock; a waiter that sees the lock busy while that owner record has not changed for ``stuck_after`` seconds
  moves everybody to the next lock name (``atp-pool:<host>:mutex-epoch`` + 1) and says so.

Clocks: expiry compares wall clocks of different machines; keep them in sync (NTP) to well under the expiry.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ATPLibrary.errors import ATPError, ConfigurationError, WaitTimeoutError
from ATPLibrary.pool.identity import Holder, machine_id
from ATPLibrary.pool.pabotlib import LockService, PabotLibError

#: Seconds a shared lease lives without renewal (a dead machine's VMs come back after at most this).
DEFAULT_EXPIRY = 60.0
#: Seconds between renewals of held leases.
DEFAULT_HEARTBEAT = 15.0
#: Seconds the PabotLib lock may stay with one unchanged holder before waiters move to the next lock name.
DEFAULT_STUCK_AFTER = 30.0


class LeaseLostError(ATPError):
    """A lease this process held was taken over or could not be renewed: another process may drive the VM."""


def _safe_key(text: str) -> str:
    return text.replace(" ", "_")


@dataclass
class SharedLease:
    """A lease held by this process in the PabotLib store."""

    host: str
    vm: str
    token: str
    holder: Holder
    expires: float
    #: Why the lease is no longer ours ("" while it is).
    lost: str = ""
    released: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class LeaseRecord:
    """A lease record as read from the store."""

    token: str
    holder: Holder
    since: float
    expires: float

    @classmethod
    def parse(cls, raw: Any) -> LeaseRecord | None:
        if not raw:
            return None
        try:
            data = json.loads(raw) if isinstance(raw, str) else dict(raw)
            return cls(
                token=str(data["token"]),
                holder=Holder.from_dict(data),
                since=float(data.get("since", 0.0)),
                expires=float(data["expires"]),
            )
        except (ValueError, TypeError, KeyError):
            return None  # not ours or damaged: treated as free, and said so by the caller

    def dump(self) -> str:
        return json.dumps({"token": self.token, **self.holder.to_dict(), "since": self.since, "expires": self.expires})


def validate_times(expiry: float, heartbeat: float) -> None:
    if expiry <= 0 or heartbeat <= 0:
        raise ConfigurationError(f"lease expiry and heartbeat must be positive (got {expiry:g} s and {heartbeat:g} s)")
    if heartbeat * 2 > expiry:
        raise ConfigurationError(
            f"the lease heartbeat ({heartbeat:g} s) must be at most half the expiry ({expiry:g} s), so that one "
            "late renewal does not lose the lease; e.g. expiry=60s heartbeat=15s"
        )


class SharedLeaseStore:
    """Leases in a PabotLib server, with expiry, renewal by a daemon heartbeat, and lost-lease detection."""

    def __init__(
        self,
        service: LockService,
        *,
        expiry: float = DEFAULT_EXPIRY,
        heartbeat: float = DEFAULT_HEARTBEAT,
        stuck_after: float = DEFAULT_STUCK_AFTER,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        caller_id: str | None = None,
        start_heartbeat: bool = True,
    ) -> None:
        validate_times(expiry, heartbeat)
        self.service = service
        self.expiry, self.heartbeat, self.stuck_after = float(expiry), float(heartbeat), float(stuck_after)
        self._clock, self._sleep = clock, sleep
        self.caller_id = caller_id or f"atp:{machine_id()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._start_heartbeat = start_heartbeat
        # PabotLib locks count re-entries per caller id: two threads of this process must not both "hold" it.
        self._local = threading.RLock()
        self._held: dict[tuple[str, str], SharedLease] = {}
        self._notices: deque[str] = deque(maxlen=200)
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ keys
    @staticmethod
    def lease_key(host: str, vm: str) -> str:
        return f"atp-pool:{_safe_key(host)}:lease:{vm}"

    @staticmethod
    def _epoch_key(host: str) -> str:
        return f"atp-pool:{_safe_key(host)}:mutex-epoch"

    @staticmethod
    def _mutex(host: str, epoch: str) -> str:
        return f"atp-pool:{_safe_key(host)}:mutex:{epoch}"

    @staticmethod
    def _owner_key(host: str, epoch: str) -> str:
        return f"atp-pool:{_safe_key(host)}:mutex-owner:{epoch}"

    @staticmethod
    def alive_key(caller_id: str) -> str:
        return f"atp-pool:alive:{caller_id}"

    # ------------------------------------------------------------------ notices
    def _notice(self, message: str) -> None:
        self._notices.append(message)

    def notices(self) -> list[str]:
        """Messages for the log (taken-over leases, moved locks, failed renewals) since the last call."""
        out: list[str] = []
        while self._notices:
            out.append(self._notices.popleft())
        return out

    # ------------------------------------------------------------------ the PabotLib lock
    @contextlib.contextmanager
    def _critical(self, host: str, timeout: float) -> Iterator[None]:
        with self._local:
            name, epoch = self._take_mutex(host, timeout)
            try:
                self._seq += 1
                self.service.set_value(self._owner_key(host, epoch), f"{self.caller_id}#{self._seq}")
                yield
            finally:
                try:
                    self.service.release_lock(name, self.caller_id)
                except PabotLibError as exc:
                    self._notice(
                        f"Could not release PabotLib lock '{name}': {exc}. Waiters move past it after "
                        f"{self.stuck_after:g} s."
                    )

    def _take_mutex(self, host: str, timeout: float) -> tuple[str, str]:
        deadline = self._clock() + timeout
        seen: tuple[str, str] | None = None
        seen_at = self._clock()
        while True:
            epoch = str(self.service.get_value(self._epoch_key(host)) or "0")
            name = self._mutex(host, epoch)
            if self.service.acquire_lock(name, self.caller_id):
                return name, epoch
            owner = str(self.service.get_value(self._owner_key(host, epoch)))
            now = self._clock()
            if seen != (epoch, owner):
                seen, seen_at = (epoch, owner), now
            elif now - seen_at >= self.stuck_after:
                try:
                    following = str(int(epoch) + 1)
                except ValueError:
                    following = "1"
                self.service.set_value(self._epoch_key(host), following)
                self._notice(
                    f"PabotLib lock '{name}' stayed with one holder ({owner or 'unknown'}) for "
                    f"{now - seen_at:.0f} s (a process that died while holding it?): moved to "
                    f"'{self._mutex(host, following)}'."
                )
                seen = None
            if now >= deadline:
                raise WaitTimeoutError(
                    f"could not take PabotLib lock '{name}' within {timeout:g} s (held by {owner or 'unknown'}). "
                    "Is the PabotLib server overloaded?"
                )
            self._sleep(0.05)

    # ------------------------------------------------------------------ leases
    def read(self, host: str, vm: str) -> LeaseRecord | None:
        """The current record of ``vm`` (no lock: for messages and checks)."""
        return LeaseRecord.parse(self.service.get_value(self.lease_key(host, vm)))

    def _why_free(self, record: LeaseRecord, now: float) -> str | None:
        if record.expires <= now:
            return f"its lease expired {now - record.expires:.0f} s ago"
        if record.holder.is_dead_local():
            return f"its process (PID {record.holder.pid}) on this machine is gone"
        return None

    def try_take(self, host: str, vm: str, holder: Holder, timeout: float = 30.0) -> tuple[SharedLease | None, str]:
        """Take ``vm``'s lease when it is free or its holder's lease expired; else ``(None, who holds it)``."""
        with self._critical(host, timeout):
            key = self.lease_key(host, vm)
            raw = self.service.get_value(key)
            record = LeaseRecord.parse(raw)
            now = self._clock()
            if raw and record is None:
                self._notice(f"VM '{vm}' on {host}: unreadable lease record {str(raw)[:120]!r} replaced.")
            elif record is not None:
                reason = self._why_free(record, now)
                if reason is None:
                    return None, f"{record.holder.describe()}, expires in {record.expires - now:.0f} s"
                self._notice(f"VM '{vm}' on {host}: took over the lease of {record.holder.describe()}: {reason}.")
            token = uuid.uuid4().hex
            mine = LeaseRecord(token=token, holder=holder, since=now, expires=now + self.expiry)
            self.service.set_value(key, mine.dump())
            self.service.set_value(self.alive_key(self.caller_id), repr(now + self.expiry))
            lease = SharedLease(host=host, vm=vm, token=token, holder=holder, expires=mine.expires)
            self._held[(host, vm)] = lease
        self._ensure_heartbeat()
        return lease, ""

    def release(self, lease: SharedLease) -> str:
        """Frees ``lease`` in the store if it is still ours; returns a problem to report ("" when none)."""
        with self._local:
            self._held.pop((lease.host, lease.vm), None)
            if lease.released:
                return ""
            lease.released = True
        try:
            with self._critical(lease.host, self.heartbeat):
                record = self.read(lease.host, lease.vm)
                if record is not None and record.token == lease.token:
                    self.service.set_value(self.lease_key(lease.host, lease.vm), "")
                    return lease.lost
                if not lease.lost:
                    now = self._clock()
                    lease.lost = (
                        f"the lease was taken by {record.holder.describe()}"
                        if record is not None
                        else "the lease record was gone"
                    ) + f" before it was released (it would have expired in {lease.expires - now:.0f} s)"
                return lease.lost
        except (PabotLibError, WaitTimeoutError) as exc:
            self._notice(
                f"Could not release the lease on VM '{lease.vm}': {exc}. It expires by itself within {self.expiry:g} s."
            )
            return lease.lost

    def renew(self) -> None:
        """Extends every held lease (one heartbeat); marks leases lost that are no longer ours."""
        with self._local:
            held = [lease for lease in self._held.values() if not lease.lost]
        for lease in held:
            try:
                with self._critical(lease.host, self.heartbeat):
                    if lease.released:
                        continue
                    record = self.read(lease.host, lease.vm)
                    now = self._clock()
                    if record is None or record.token != lease.token:
                        lease.lost = (
                            f"the lease was taken by {record.holder.describe()}"
                            if record is not None
                            else "the lease record disappeared from PabotLib (server restarted?)"
                        )
                        continue
                    renewed = LeaseRecord(record.token, record.holder, record.since, now + self.expiry)
                    self.service.set_value(self.lease_key(lease.host, lease.vm), renewed.dump())
                    self.service.set_value(self.alive_key(self.caller_id), repr(renewed.expires))
                    lease.expires = renewed.expires
            except (PabotLibError, WaitTimeoutError) as exc:
                if self._clock() >= lease.expires:
                    lease.lost = f"it could not be renewed before it expired: {exc}"
                else:
                    self._notice(f"Renewing the lease on VM '{lease.vm}' failed (retrying): {exc}")

    def lost(self) -> list[SharedLease]:
        with self._local:
            return [lease for lease in self._held.values() if lease.lost]

    def caller_alive(self, caller_id: str) -> bool:
        """Whether the process with ``caller_id`` renewed its liveness in the store within the expiry."""
        raw = self.service.get_value(self.alive_key(caller_id))
        try:
            return float(raw) > self._clock()
        except (TypeError, ValueError):
            return False

    # ------------------------------------------------------------------ heartbeat
    def _ensure_heartbeat(self) -> None:
        if not self._start_heartbeat or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="atp-lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._local:
                if not self._held:
                    self._thread = None
                    return
            try:
                self.renew()
            except Exception as exc:  # the heartbeat must keep beating whatever one round did
                self._notice(f"Lease heartbeat round failed: {exc!r}")

    def stop(self) -> None:
        self._stop.set()
