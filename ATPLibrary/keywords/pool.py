"""VM pool keywords: lease a VM so that no two parallel processes drive it at once."""

from __future__ import annotations

import os
from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.pool.leases import Lease, LeaseStore


class PoolKeywords:
    """Acquire and release VMs.  A lease ends with `Release VM`, at the end of the test or suite that took it,
    or when its process dies (it is a kernel file lock), so a failed or killed run never strands a VM."""

    def __init__(self, ctx: LibraryContext, store: LeaseStore | None = None) -> None:
        self.ctx = ctx
        self.store = store or LeaseStore()
        self._leases: dict[str, tuple[Lease, str]] = {}  # vm -> (lease, scope that releases it)
        self._scopes: list[str] = []

    @keyword("Acquire VM")
    def acquire_vm(self, *vms: str, timeout: timedelta | None = None, prefer: int = 0) -> str:
        """Leases the first free VM of ``vms`` for this process and returns its name.

        Waits up to ``timeout`` (default: the library timeout) while all are leased elsewhere, then fails
        naming each VM's holder. ``prefer`` is the index tried first (e.g. ``${PABOTEXECUTIONPOOLID}``,
        to spread processes over VMs). The lease lasts until `Release VM`, the end of the test (or, when
        taken in a suite setup, the suite) that acquired it, or the death of this process.

        Leases are per machine (files under ``$ATP_LEASE_DIR``, default ``/tmp/atp-leases``): every process
        that runs suites against these VMs must run on this machine.

        | =Assignment= | =Keyword=  | =VMs=      | =VMs=      | =Options=      |
        | ${vm} =      | Acquire VM | atp-lab-01 | atp-lab-02 | timeout=5 min  |
        """
        names = [v for vm in vms for v in _split(vm)]
        seconds = self.ctx.seconds(timeout)
        host = self.ctx.host.uri
        scope = self._scopes[-1] if self._scopes else "process"
        holder = f"{os.environ.get('PABOTQUEUEINDEX', '')}:{scope}".strip(":")
        lease = self.store.acquire(host, names, holder=holder, timeout=seconds, prefer=int(prefer))
        self._leases[lease.vm] = (lease, scope)
        logger.info(f"Acquired VM '{lease.vm}' on {host} (lease file {lease.path}).")
        return lease.vm

    @keyword("Release VM")
    def release_vm(self, vm: str) -> None:
        """Releases the lease on ``vm`` taken with `Acquire VM` by this process.

        | =Keyword=  | =VM=    |
        | Release VM | ${vm}   |
        """
        entry = self._leases.pop(vm, None)
        if entry is None:
            held = ", ".join(self._leases) or "none"
            raise ConfigurationError(f"this process holds no lease on VM '{vm}' (it holds: {held})")
        entry[0].release()
        logger.info(f"Released VM '{vm}'.")

    # Called by the library's listener.
    def enter_scope(self, scope: str) -> None:
        self._scopes.append(scope)

    def leave_scope(self, scope: str) -> None:
        for vm, (lease, owner) in list(self._leases.items()):
            if owner == scope:
                lease.release()
                del self._leases[vm]
                logger.info(f"Released VM '{vm}' at the end of {scope}.")
        if self._scopes and self._scopes[-1] == scope:
            self._scopes.pop()


def _split(value: str) -> list[str]:
    """One argument may hold several names separated by commas (as ``--variable VMS:a,b`` gives them)."""
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]
