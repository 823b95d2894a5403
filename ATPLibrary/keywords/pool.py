"""VM pool keywords: lease a VM so that no two parallel processes (or runners) drive it at once, and prove it
inside the guest."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ConfigurationError, GuestAgentError, HostError
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.hosts.state import VMState
from ATPLibrary.keywords.context import LibraryContext, to_seconds
from ATPLibrary.pool import guest
from ATPLibrary.pool.guest import GuestLeaseHeldError, GuestLeaseRecord
from ATPLibrary.pool.identity import Holder
from ATPLibrary.pool.leases import LeaseStore
from ATPLibrary.pool.pool import Backend, LeaseLostError, PoolSettings, VmLease, VmPool, make_pool


class PoolKeywords:
    """Acquire and release VMs, and the in-guest lease.

    A lease ends with `Release VM`, at the end of the test or suite that took it, or when its process dies,
    so a failed or killed run never strands a VM. With the ``pabotlib`` backend leases also expire when not
    renewed (a dead machine's VMs come back). See docs/pool.md.
    """

    def __init__(self, ctx: LibraryContext, store: LeaseStore | None = None) -> None:
        self.ctx = ctx
        self.store = store or LeaseStore()
        self._settings: PoolSettings | None = None
        self._pool: VmPool | None = None
        self._leases: dict[str, tuple[VmLease, str]] = {}  # vm -> (lease, scope that releases it)
        # vm -> (record, scope, host it was taken on)
        self._guest: dict[str, tuple[GuestLeaseRecord, str, HostConnection]] = {}
        self._scopes: list[str] = []

    # ------------------------------------------------------------------ helpers
    @property
    def _scope(self) -> str:
        return self._scopes[-1] if self._scopes else "process"

    def _pool_now(self) -> VmPool:
        if self._pool is None:
            settings = self._settings or PoolSettings.from_env(pabotlib_uri=_robot_variable("${PABOTLIBURI}"))
            self._pool, why = make_pool(settings, self.store)
            logger.info(why)
        return self._pool

    def _relay(self) -> None:
        if self._pool is not None:
            for notice in self._pool.notices():
                logger.warn(f"VM pool: {notice}")

    def _check_lost(self) -> None:
        """Fails loudly when a lease of this process was lost (taken over, or not renewable)."""
        self._relay()
        for vm, (lease, _scope) in list(self._leases.items()):
            if lease.lost:
                del self._leases[vm]
                lease.release()
                raise LeaseLostError(
                    f"The lease of this process on VM '{vm}' ({lease.host}) was lost: {lease.lost}. Another process "
                    "may be driving the VM, so what this run did on it since cannot be trusted. Check the PabotLib "
                    "server and raise the lease expiry (ATP_LEASE_EXPIRY) if the heartbeat could not keep up."
                )

    # ------------------------------------------------------------------ keywords
    @keyword("Configure VM Pool")
    def configure_vm_pool(
        self,
        backend: str = "auto",
        expiry: timedelta | None = None,
        heartbeat: timedelta | None = None,
        pabotlib_uri: str = "",
    ) -> str:
        """Chooses how VMs are leased and returns the backend in use (``local`` or ``pabotlib``).

        - ``backend``: ``local`` (a kernel file lock on this machine), ``pabotlib`` (that lock plus an expiring
          record in a PabotLib server shared by every runner) or ``auto`` (``pabotlib`` when a PabotLib server
          answers, else ``local``). Without this keyword ``ATP_POOL`` decides (default ``auto``).
        - ``expiry``: how long a shared lease lives without renewal (default ``ATP_LEASE_EXPIRY`` or 60 s).
        - ``heartbeat``: how often held leases are renewed (default ``ATP_LEASE_HEARTBEAT`` or 15 s; at most half
          the expiry).
        - ``pabotlib_uri``: ``host:port`` of the PabotLib server (default ``ATP_PABOTLIB_URI``, else
          ``${PABOTLIBURI}``, which pabot sets).

        Fails while this process holds leases (they were taken with the other backend).

        | =Assignment= | =Keyword=         | =Option=         | =Option=    |
        | ${backend} = | Configure VM Pool | backend=pabotlib | expiry=2min |
        """
        if self._leases:
            raise ConfigurationError(
                f"cannot change the VM pool while this process holds leases ({', '.join(self._leases)}); "
                "call Configure VM Pool before Acquire VM"
            )
        base = PoolSettings.from_env(pabotlib_uri=_robot_variable("${PABOTLIBURI}"))
        settings = PoolSettings(
            backend=Backend.parse(backend),
            expiry=to_seconds(expiry) if expiry is not None else base.expiry,
            heartbeat=to_seconds(heartbeat) if heartbeat is not None else base.heartbeat,
            pabotlib_uri=pabotlib_uri or base.pabotlib_uri,
        )
        if self._pool is not None and self._pool.shared is not None:
            self._pool.shared.stop()
        self._settings, self._pool = settings, None
        return str(self._pool_now().backend.value)

    @keyword("Acquire VM")
    def acquire_vm(self, *vms: str, timeout: timedelta | None = None, prefer: int = 0) -> str:
        """Leases the first free VM of ``vms`` for this process and returns its name.

        Waits up to ``timeout`` (default: the library timeout) while all are leased elsewhere, then fails
        naming each VM's holder. ``prefer`` is the index tried first (e.g. ``${PABOTEXECUTIONPOOLID}``,
        to spread processes over VMs). The lease lasts until `Release VM`, the end of the test (or, when
        taken in a suite setup, the suite) that acquired it, or the death of this process.

        The backend (see `Configure VM Pool`, ``ATP_POOL``) is logged. With ``local``, every process that
        shares these VMs must run on this machine with the same ``ATP_LEASE_DIR``; with ``pabotlib``,
        runners on any machine that use one PabotLib server share them. Fails first if a lease of this process
        was lost.

        | =Assignment= | =Keyword=  | =VMs=      | =VMs=      | =Options=      |
        | ${vm} =      | Acquire VM | atp-lab-01 | atp-lab-02 | timeout=5 min  |
        """
        self._check_lost()
        names = [v for vm in vms for v in _split(vm)]
        seconds = self.ctx.seconds(timeout)
        host = self.ctx.host.uri
        pool = self._pool_now()
        scope = self._scope
        holder = Holder.current(f"{os.environ.get('PABOTQUEUEINDEX', '')}:{scope}".strip(":"))
        lease = pool.acquire(host, names, holder, timeout=seconds, prefer=int(prefer))
        self._leases[lease.vm] = (lease, scope)
        self._relay()
        logger.info(f"Acquired VM '{lease.vm}' on {host} ({pool.backend.value} lease; lock file {lease.local.path}).")
        return lease.vm

    @keyword("Release VM")
    def release_vm(self, vm: str) -> None:
        """Releases the lease on ``vm`` taken with `Acquire VM` by this process.

        Fails if the lease was lost before (another process took it over).

        | =Keyword=  | =VM=    |
        | Release VM | ${vm}   |
        """
        entry = self._leases.pop(vm, None)
        if entry is None:
            self._check_lost()
            held = ", ".join(self._leases) or "none"
            raise ConfigurationError(f"this process holds no lease on VM '{vm}' (it holds: {held})")
        problem = entry[0].release()
        self._relay()
        if problem:
            raise LeaseLostError(f"The lease on VM '{vm}' was lost before its release: {problem}")
        logger.info(f"Released VM '{vm}'.")

    @keyword("Take Guest Lease")
    def take_guest_lease(self, vm: str, timeout: timedelta | None = None) -> None:
        """Creates ``/run/atp-lease`` in ``vm`` atomically, naming this process and test.

        Fails naming the holder when the file already exists. The file is created through the guest agent.

        This proves exclusive use independently of the pool: two processes that both think they own the VM
        cannot both take it. A file left by a killed holder is broken (and that is logged) only when this
        process holds the VM's pool lease (`Acquire VM`) and the recorded holder is provably gone (its PID on
        this machine is dead, or its PabotLib liveness expired). The lease ends with `Release Guest Lease` or
        the end of the test (or suite) that took it; a reboot of the guest also removes it. ``timeout`` bounds
        each guest agent command, including the wait for a guest agent that is not connected yet (default: the
        library timeout).

        | =Keyword=        | =VM=  |
        | Take Guest Lease | ${VM} |
        """
        self._check_lost()
        seconds = self.ctx.seconds(timeout)
        host = self.ctx.host
        pool_lease = self._leases.get(vm, (None, ""))[0]
        shared = self._pool.shared if self._pool is not None else None
        holder = Holder.current(self._scope)
        record = GuestLeaseRecord(
            holder=holder,
            test=_robot_variable("${TEST NAME}") or self._scope,
            vm=vm,
            caller=shared.caller_id if shared is not None and pool_lease is not None else "",
        )

        def stale(current: GuestLeaseRecord) -> str | None:
            return guest.stale_reason(
                current,
                pool_lease_held=pool_lease is not None and not pool_lease.lost,
                caller_alive=shared.caller_alive if shared is not None else None,
            )

        note = guest.take(self.ctx.agent(vm), record, stale_reason=stale, timeout=seconds)
        if note.startswith("broke"):
            logger.warn(f"VM '{vm}': {note}.")
        self._guest[vm] = (record, self._scope, host)
        logger.info(f"Took the in-guest lease {guest.LEASE_FILE} on VM '{vm}' for {record.describe()}.")

    @keyword("Release Guest Lease")
    def release_guest_lease(self, vm: str, force: bool = False, timeout: timedelta | None = None) -> None:
        """Removes ``/run/atp-lease`` from ``vm`` if this process took it.

        Fails naming the holder when the file now belongs to someone else (the VM was used by another process
        meanwhile).

        ``force=True`` removes the file whoever holds it (a manual clean-up) and logs what it held.
        ``timeout`` bounds each guest agent command (default: the library timeout).

        | =Keyword=           | =VM=  |
        | Release Guest Lease | ${VM} |
        """
        seconds = self.ctx.seconds(timeout)
        if force:
            self._guest.pop(vm, None)
            held = guest.force_remove(self.ctx.agent(vm), timeout=seconds)
            logger.warn(f"VM '{vm}': removed {guest.LEASE_FILE} by force; it held: {held.strip() or 'nothing'}")
            return
        entry = self._guest.pop(vm, None)
        if entry is None:
            raise ConfigurationError(f"this process took no in-guest lease on VM '{vm}' (use force=True to remove any)")
        self._release_guest(vm, entry[0], entry[2], seconds)

    def _release_guest(self, vm: str, record: GuestLeaseRecord, host: HostConnection, seconds: float) -> None:
        try:
            if host.state(vm) is not VMState.RUNNING:
                logger.info(
                    f"VM '{vm}' is not running: its in-guest lease went with it ({guest.LEASE_FILE} is a tmpfs)."
                )
                return
            from ATPLibrary.qga.agent import GuestAgent

            outcome = guest.release(GuestAgent(host.domain(vm)), record.token, timeout=seconds)
        except (GuestAgentError, HostError) as exc:
            logger.warn(f"VM '{vm}': could not check and remove the in-guest lease: {exc}")
            return
        if outcome == "missing":
            logger.info(f"VM '{vm}': {guest.LEASE_FILE} was already gone (the guest rebooted or was reset).")
        else:
            logger.info(f"Released the in-guest lease on VM '{vm}'.")

    # ------------------------------------------------------------------ called by the library's listener
    def enter_scope(self, scope: str) -> None:
        self._scopes.append(scope)

    def leave_scope(self, scope: str, result: Any = None) -> list[str]:
        """Ends the in-guest and pool leases taken in ``scope``; returns problems (also logged as errors, and
        when ``result`` is a test's result, they fail it)."""
        problems: list[str] = []
        for vm, (record, owner, host) in list(self._guest.items()):
            if owner == scope:
                del self._guest[vm]
                try:
                    self._release_guest(vm, record, host, self.ctx.seconds(None))
                except GuestLeaseHeldError as exc:
                    problems.append(str(exc))
        for vm, (lease, owner) in list(self._leases.items()):
            if owner == scope:
                del self._leases[vm]
                problem = lease.release()
                if problem:
                    problems.append(f"The lease on VM '{vm}' was lost during {scope}: {problem}")
                else:
                    logger.info(f"Released VM '{vm}' at the end of {scope}.")
        self._relay()
        if self._scopes and self._scopes[-1] == scope:
            self._scopes.pop()
        for problem in problems:
            logger.error(problem)
        if problems and result is not None and hasattr(result, "status"):
            result.status = "FAIL"
            result.message = "\n\n".join([m for m in (getattr(result, "message", ""), *problems) if m])
        return problems


def _split(value: str) -> list[str]:
    """One argument may hold several names separated by commas (as ``--variable VMS:a,b`` gives them)."""
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _robot_variable(name: str) -> str:
    from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

    try:
        value = BuiltIn().get_variable_value(name)
    except RobotNotRunningError:
        return ""
    return "" if value is None else str(value)
