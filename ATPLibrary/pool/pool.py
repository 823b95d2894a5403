"""The VM pool: a local ``flock`` lease always, plus a shared PabotLib lease when that backend is chosen.

Backends (``ATP_POOL`` or `Configure VM Pool`):

- ``local``: the kernel ``flock`` of :mod:`.leases` only; every process that shares VMs runs on this machine.
- ``pabotlib``: the flock *and* an expiring record in a PabotLib server (:mod:`.shared`), so runners on several
  machines (or with different ``ATP_LEASE_DIR``) share the VMs.  The flock still frees a VM at once when a
  local process dies; the record frees it after its expiry when a machine dies.
- ``auto`` (default): ``pabotlib`` when a PabotLib URI is known and its server answers, else ``local``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ATPLibrary.errors import ConfigurationError, WaitTimeoutError
from ATPLibrary.pool.identity import Holder
from ATPLibrary.pool.leases import Lease, LeaseStore, candidate_order
from ATPLibrary.pool.pabotlib import PabotLibError, RemotePabotLib
from ATPLibrary.pool.shared import (
    DEFAULT_EXPIRY,
    DEFAULT_HEARTBEAT,
    LeaseLostError,
    SharedLease,
    SharedLeaseStore,
    validate_times,
)


class Backend(StrEnum):
    LOCAL = "local"
    PABOTLIB = "pabotlib"
    AUTO = "auto"

    @classmethod
    def parse(cls, value: str | Backend) -> Backend:
        if isinstance(value, Backend):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigurationError(
                f"unknown VM pool backend '{value}': use local, pabotlib or auto (ATP_POOL or Configure VM Pool)"
            ) from None


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        from robot.utils import timestr_to_secs  # Robot's time format: 60, 60s, 1 minute

        return float(timestr_to_secs(raw))
    except (ImportError, ValueError):
        raise ConfigurationError(f"{name}='{raw}' is not a time: use e.g. 60, 60s or '1 minute'") from None


@dataclass
class PoolSettings:
    """Which backend, how long leases live, how often they are renewed, where PabotLib is."""

    backend: Backend = Backend.AUTO
    expiry: float = DEFAULT_EXPIRY
    heartbeat: float = DEFAULT_HEARTBEAT
    #: ``host:port``; ``ATP_PABOTLIB_URI`` wins over ``${PABOTLIBURI}`` (which pabot always sets).
    pabotlib_uri: str = ""

    @classmethod
    def from_env(cls, pabotlib_uri: str = "") -> PoolSettings:
        settings = cls(
            backend=Backend.parse(os.environ.get("ATP_POOL", "auto") or "auto"),
            expiry=_env_seconds("ATP_LEASE_EXPIRY", DEFAULT_EXPIRY),
            heartbeat=_env_seconds("ATP_LEASE_HEARTBEAT", DEFAULT_HEARTBEAT),
            pabotlib_uri=os.environ.get("ATP_PABOTLIB_URI", "") or pabotlib_uri,
        )
        validate_times(settings.expiry, settings.heartbeat)
        return settings


def choose_backend(settings: PoolSettings, probe_timeout: float = 3.0) -> tuple[Backend, str]:
    """The backend to use and why (for the log).  ``pabotlib`` asked for but unreachable is an error."""
    if settings.backend is Backend.LOCAL:
        return Backend.LOCAL, "chosen (local flock only)"
    uri = settings.pabotlib_uri
    if not uri:
        if settings.backend is Backend.PABOTLIB:
            raise ConfigurationError(
                "VM pool backend 'pabotlib' needs a PabotLib server: run under pabot (it sets ${PABOTLIBURI}) "
                "or set ATP_PABOTLIB_URI=host:port"
            )
        return Backend.LOCAL, "auto: no PabotLib URI (not under pabot, no ATP_PABOTLIB_URI)"
    problem = RemotePabotLib(uri, timeout=probe_timeout).reachable()
    if problem is None:
        why = "chosen" if settings.backend is Backend.PABOTLIB else "auto: the server answers"
        return Backend.PABOTLIB, f"{why} (PabotLib at {uri})"
    if settings.backend is Backend.PABOTLIB:
        raise ConfigurationError(f"VM pool backend 'pabotlib': {problem}")
    return Backend.LOCAL, f"auto: no PabotLib server answers at {uri}"


@dataclass
class VmLease:
    """A leased VM: its local flock and, with the pabotlib backend, its shared record."""

    vm: str
    host: str
    holder: Holder
    local: Lease = field(repr=False)
    shared: SharedLease | None = None
    store: SharedLeaseStore | None = field(default=None, repr=False)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def backend(self) -> Backend:
        return Backend.PABOTLIB if self.shared is not None else Backend.LOCAL

    @property
    def lost(self) -> str:
        return self.shared.lost if self.shared is not None else ""

    def release(self) -> str:
        """Ends the lease; returns a problem to report (lost before release), "" when none."""
        problem = ""
        try:
            if self.shared is not None and self.store is not None:
                problem = self.store.release(self.shared)
        finally:
            self.local.release()
        return problem


class VmPool:
    """Lease VMs with the chosen backend."""

    def __init__(
        self,
        backend: Backend,
        local: LeaseStore | None = None,
        shared: SharedLeaseStore | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if backend is Backend.PABOTLIB and shared is None:
            raise ConfigurationError("the pabotlib backend needs a shared lease store")
        if backend is Backend.AUTO:
            raise ConfigurationError("choose the backend (choose_backend) before making the pool")
        self.backend = backend
        self.local = local or LeaseStore()
        self.shared = shared if backend is Backend.PABOTLIB else None
        self._clock, self._sleep = clock, sleep

    def acquire(
        self,
        host: str,
        candidates: Sequence[str],
        holder: Holder,
        timeout: float,
        prefer: int = 0,
        poll: float = 0.2,
    ) -> VmLease:
        """Lease the first free VM of ``candidates`` (``candidates[prefer]`` first); wait up to ``timeout``."""
        order = candidate_order(candidates, prefer)
        deadline = self._clock() + timeout
        busy: dict[str, str] = {}
        while True:
            for vm in order:
                local = self.local.try_acquire(host, vm, holder.describe())
                if local is None:
                    busy[vm] = f"{self.local.holder(host, vm) or 'busy'} (local lock)"
                    continue
                if self.shared is None:
                    return VmLease(vm=vm, host=host, holder=holder, local=local)
                try:
                    shared, held_by = self.shared.try_take(host, vm, holder, timeout=max(5.0, timeout))
                except BaseException:
                    local.release()
                    raise
                if shared is None:
                    local.release()
                    busy[vm] = held_by
                    continue
                return VmLease(vm=vm, host=host, holder=holder, local=local, shared=shared, store=self.shared)
            if self._clock() >= deadline:
                held = "; ".join(f"{vm}: {busy.get(vm, 'busy')}" for vm in order)
                raise WaitTimeoutError(
                    f"no free VM among {', '.join(order)} on {host} within {timeout:g} s ({held}). "
                    "Run fewer parallel processes than VMs, add VMs, or raise the timeout."
                )
            self._sleep(poll)

    def lost(self) -> list[SharedLease]:
        return self.shared.lost() if self.shared is not None else []

    def notices(self) -> list[str]:
        return self.shared.notices() if self.shared is not None else []


def make_pool(settings: PoolSettings, local: LeaseStore | None = None) -> tuple[VmPool, str]:
    """The pool for ``settings`` and a sentence for the log saying which backend and why."""
    backend, why = choose_backend(settings)
    if backend is Backend.LOCAL:
        return VmPool(Backend.LOCAL, local), f"VM pool backend: local ({why})"
    shared = SharedLeaseStore(
        RemotePabotLib(settings.pabotlib_uri), expiry=settings.expiry, heartbeat=settings.heartbeat
    )
    return (
        VmPool(Backend.PABOTLIB, local, shared),
        f"VM pool backend: pabotlib ({why}); leases expire after {settings.expiry:g} s without renewal, "
        f"renewed every {settings.heartbeat:g} s",
    )


__all__ = [
    "Backend",
    "LeaseLostError",
    "PabotLibError",
    "PoolSettings",
    "VmLease",
    "VmPool",
    "choose_backend",
    "make_pool",
]
