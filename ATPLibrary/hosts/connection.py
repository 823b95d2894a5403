"""A libvirt connection to one host, opened lazily, kept alive and re-opened with backoff when it breaks."""

from __future__ import annotations

import contextlib
import difflib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import libvirt

from ATPLibrary.errors import HostConnectionError, HostError, VMNotFoundError, VMStateError, VMStateTimeout
from ATPLibrary.hosts.state import VMState
from ATPLibrary.hosts.timing import Backoff, Clock, Deadline, Sleep, format_seconds

T = TypeVar("T")
log = logging.getLogger(__name__)

Opener = Callable[[str], libvirt.virConnect]

#: libvirt error codes that always mean "the connection itself is gone".
_BROKEN_CODES = frozenset({libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_RPC})
#: error domains in which VIR_ERR_SYSTEM_ERROR means a dead socket (not, say, a missing file on the host).
_TRANSPORT_DOMAINS = frozenset({libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE})


def is_transport_error(err: libvirt.libvirtError) -> bool:
    """Whether ``err`` by itself says the connection is gone (e.g. ``Cannot write data: Broken pipe`` after
    libvirtd restarted: ``isAlive()`` still answers True on such a connection until a call fails)."""
    code = error_code(err)
    if code in _BROKEN_CODES:
        return True
    return code == libvirt.VIR_ERR_SYSTEM_ERROR and err.get_error_domain() in _TRANSPORT_DOMAINS


_setup_lock = threading.Lock()
_setup_done = False
_event_loop_started = False


def _silence_libvirt_stderr() -> None:
    """libvirt prints every error to stderr by default; the library reports errors itself."""
    global _setup_done
    with _setup_lock:
        if not _setup_done:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _setup_done = True


def ensure_event_loop() -> bool:
    """Start libvirt's default event loop in a daemon thread (needed for keepalive).  Idempotent."""
    global _event_loop_started
    with _setup_lock:
        if _event_loop_started:
            return True
        try:
            libvirt.virEventRegisterDefaultImpl()
        except libvirt.libvirtError as err:  # pragma: no cover - depends on the libvirt build
            log.debug("no libvirt event loop: %s", err)
            return False

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except libvirt.libvirtError:  # pragma: no cover
                    time.sleep(0.1)

        threading.Thread(target=run, name="atp-libvirt-events", daemon=True).start()
        _event_loop_started = True
        return True


def error_code(err: BaseException) -> int | None:
    """The libvirt error code of ``err`` (``None`` when it is not a libvirtError)."""
    if isinstance(err, libvirt.libvirtError):
        code = err.get_error_code()
        return int(code) if code is not None else None
    return None


class DomainTarget(Protocol):
    """What the protocol clients need from a domain: its names and a way to run a call on it."""

    @property
    def name(self) -> str: ...

    @property
    def uri(self) -> str: ...

    def run(self, fn: Callable[[libvirt.virDomain], T], *, what: str, idempotent: bool) -> T: ...


class HostConnection:
    """One libvirt host (any URI: ``qemu:///system``, ``qemu+ssh://root@host/system``, ``test:///default``).

    The connection opens on first use.  When a call fails because the connection is broken, the connection is
    re-opened with exponential backoff (``backoff``, bounded by ``reconnect_timeout`` seconds) and the call is
    repeated once if it is idempotent (lookups, state reads, agent/monitor reads).
    """

    def __init__(
        self,
        uri: str,
        *,
        alias: str | None = None,
        keepalive: tuple[int, int] | None = (5, 3),
        reconnect_timeout: float = 30.0,
        backoff: Backoff | None = None,
        opener: Opener | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.uri = uri
        self._handles: dict[str, DomainHandle] = {}
        self.alias = alias or uri
        self.keepalive = keepalive
        self.reconnect_timeout = reconnect_timeout
        self.backoff = backoff or Backoff(initial=0.5, factor=2.0, cap=8.0)
        self._opener = opener
        self._clock = clock
        self._sleep = sleep
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.RLock()
        self.generation = 0
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"HostConnection({self.uri!r}, alias={self.alias!r}, open={self.is_open})"

    # -- connection life cycle -------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def _open_once(self) -> libvirt.virConnect:
        if self._opener is not None:
            return self._opener(self.uri)
        _silence_libvirt_stderr()
        if self.keepalive is not None:
            ensure_event_loop()
        conn = libvirt.open(self.uri)
        if conn is None:  # pragma: no cover - old bindings returned None
            raise libvirt.libvirtError(f"virConnectOpen('{self.uri}') failed")
        return conn

    def _configure(self, conn: libvirt.virConnect) -> None:
        if self.keepalive is None or self._opener is not None:
            return
        try:
            conn.setKeepAlive(*self.keepalive)
        except libvirt.libvirtError as err:
            log.debug("keepalive not available on %s: %s", self.uri, err)

    def open(self) -> libvirt.virConnect:
        """Return the open connection, opening it now if needed (one attempt; raises HostConnectionError)."""
        with self._lock:
            if self._conn is not None:
                return self._conn
            try:
                conn = self._open_once()
            except libvirt.libvirtError as err:
                raise HostConnectionError(f"Cannot connect to libvirt host '{self.uri}': {err}") from err
            self._configure(conn)
            self._conn = conn
            self.generation += 1
            return conn

    def reconnect(self, reason: str = "") -> libvirt.virConnect:
        """Drop the connection and open it again, retrying with exponential backoff until the deadline."""
        with self._lock:
            self._drop()
            deadline = Deadline(self.reconnect_timeout, self._clock)
            delays = self.backoff.delays()
            attempts = 0
            while True:
                attempts += 1
                try:
                    conn = self._open_once()
                except libvirt.libvirtError as err:
                    remaining = deadline.remaining()
                    if remaining <= 0:
                        why = f" after: {reason}" if reason else ""
                        raise HostConnectionError(
                            f"Lost the connection to libvirt host '{self.uri}'{why}; could not reconnect "
                            f"within {format_seconds(self.reconnect_timeout)} ({attempts} attempts, "
                            f"last error: {err})"
                        ) from err
                    self._sleep(min(next(delays), remaining))
                    continue
                self._configure(conn)
                self._conn = conn
                self.generation += 1
                self.reconnects += 1
                log.info("reconnected to %s after %d attempt(s)", self.uri, attempts)
                return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def close(self) -> None:
        """Close the connection (it re-opens on next use)."""
        with self._lock:
            self._drop()

    def is_broken(self, conn: libvirt.virConnect, err: libvirt.libvirtError) -> bool:
        """Whether ``err`` means the connection is gone (rather than the operation failing)."""
        if is_transport_error(err):
            return True
        try:
            return not conn.isAlive()
        except libvirt.libvirtError:
            return True

    def call(self, fn: Callable[[libvirt.virConnect], T], *, what: str, idempotent: bool) -> T:
        """Run ``fn(conn)``; on a broken connection reconnect and, if ``idempotent``, run it once more.

        libvirt errors that are not connection failures propagate unchanged (callers map them).
        """
        conn = self.open()
        try:
            return fn(conn)
        except libvirt.libvirtError as err:
            if not self.is_broken(conn, err):
                raise
            if not idempotent:
                with self._lock:
                    if self._conn is conn:
                        self._drop()
                raise HostConnectionError(
                    f"The connection to '{self.uri}' broke during {what}: {err}. It was not retried "
                    f"because it may already have taken effect; the next call reconnects."
                ) from err
            log.warning("connection to %s broke during %s (%s); reconnecting", self.uri, what, err)
            with self._lock:
                conn2 = self._conn if (self._conn is not None and self._conn is not conn) else None
                if conn2 is None:
                    conn2 = self.reconnect(str(err))
        try:
            return fn(conn2)
        except libvirt.libvirtError as err:
            if self.is_broken(conn2, err):
                with self._lock:
                    if self._conn is conn2:
                        self._drop()
                raise HostConnectionError(
                    f"The connection to '{self.uri}' broke again while retrying {what}: {err}"
                ) from err
            raise

    # -- domains ---------------------------------------------------------------------------------------------
    def domain_names(self) -> list[str]:
        """Names of all defined domains (running or not), sorted."""
        return self.call(
            lambda c: sorted(d.name() for d in c.listAllDomains(0)), what="listing domains", idempotent=True
        )

    def lookup(self, conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
        """Look ``name`` up on ``conn``; VMNotFoundError lists the defined names, close matches first."""
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as err:
            if error_code(err) != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            try:
                names = sorted(d.name() for d in conn.listAllDomains(0))
            except libvirt.libvirtError:
                names = []
            raise VMNotFoundError(self._not_found_message(name, names)) from err

    def _not_found_message(self, name: str, names: list[str]) -> str:
        close = difflib.get_close_matches(name, names, n=len(names) or 1, cutoff=0.5)
        ordered = close + [n for n in names if n not in close]
        listed = ", ".join(ordered) if ordered else "(none)"
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"VM '{name}' not found on host '{self.uri}'.{hint} Defined domains: {listed}."

    def domain(self, name: str) -> DomainHandle:
        """A handle that runs calls on domain ``name`` (looked up lazily, again after a reconnect).

        Handles are kept per name, so repeated keywords on one VM do not look it up again each time.
        """
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = DomainHandle(self, name)
        return handle

    def _fail(self, what: str, name: str, err: libvirt.libvirtError) -> HostError:
        msg = f"{what} of VM '{name}' on '{self.uri}' failed: {err}"
        if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID:
            return VMStateError(msg)
        return HostError(msg)

    def state(self, name: str) -> VMState:
        """The domain's current state."""
        dom = self.domain(name)
        try:
            code = dom.run(lambda d: d.state(0)[0], what=f"reading the state of '{name}'", idempotent=True)
        except libvirt.libvirtError as err:
            raise self._fail("Reading the state", name, err) from err
        return VMState.from_libvirt(int(code))

    def start(self, name: str) -> bool:
        """Start (or resume) the domain.  Returns False when it was already running."""
        current = self.state(name)
        if current is VMState.RUNNING:
            return False
        dom = self.domain(name)
        try:
            if current is VMState.PAUSED:
                dom.run(lambda d: d.resume(), what=f"resuming '{name}'", idempotent=False)
            elif current is VMState.PMSUSPENDED:
                dom.run(lambda d: d.pMWakeup(0), what=f"waking '{name}'", idempotent=False)
            else:
                dom.run(lambda d: d.create(), what=f"starting '{name}'", idempotent=False)
        except libvirt.libvirtError as err:
            raise self._fail("Starting", name, err) from err
        return True

    def destroy(self, name: str) -> bool:
        """Power the domain off at once.  Returns False when it was already shut off."""
        if self.state(name) is VMState.SHUTOFF:
            return False
        try:
            self.domain(name).run(lambda d: d.destroy(), what=f"destroying '{name}'", idempotent=False)
        except libvirt.libvirtError as err:
            if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID and self.state(name) is VMState.SHUTOFF:
                return True
            raise self._fail("Destroying", name, err) from err
        return True

    def reboot(self, name: str) -> None:
        """Ask the guest to reboot (libvirt default mode: agent if connected, else ACPI)."""
        try:
            self.domain(name).run(lambda d: d.reboot(0), what=f"rebooting '{name}'", idempotent=False)
        except libvirt.libvirtError as err:
            raise self._fail("Rebooting", name, err) from err

    def request_shutdown(self, name: str) -> None:
        """Ask the guest to shut down (libvirt default mode) without waiting."""
        try:
            self.domain(name).run(lambda d: d.shutdown(), what=f"shutting down '{name}'", idempotent=False)
        except libvirt.libvirtError as err:
            raise self._fail("Shutting down", name, err) from err

    def shutdown(self, name: str, timeout: float, *, repeat_every: float = 5.0, poll: float = 0.2) -> bool:
        """Gracefully shut the domain down and wait until it is shut off.

        The request is repeated every ``repeat_every`` seconds while the guest keeps running (an early ACPI
        press can be lost while the guest boots).  Returns False when it was already shut off.
        """
        if self.state(name) is VMState.SHUTOFF:
            return False
        deadline = Deadline(timeout, self._clock)
        self.request_shutdown(name)
        last_request = self._clock()
        while True:
            seen = self.state(name)
            if seen is VMState.SHUTOFF:
                return True
            if deadline.expired:
                raise VMStateTimeout(
                    f"VM '{name}' on '{self.uri}' did not shut off within {format_seconds(timeout)} after a "
                    f"graceful shutdown request; last seen state '{seen}'. Use Destroy VM to force it off."
                )
            if seen is VMState.RUNNING and self._clock() - last_request >= repeat_every:
                with contextlib.suppress(VMStateError):
                    self.request_shutdown(name)
                last_request = self._clock()
            self._sleep(min(poll, max(deadline.remaining(), 0.001)))

    def wait_for_state(self, name: str, state: VMState | str, timeout: float, *, poll: float = 0.2) -> VMState:
        """Poll until the domain is in ``state``; VMStateTimeout names the VM, both states and the timeout."""
        wanted = VMState.parse(state)
        deadline = Deadline(timeout, self._clock)
        while True:
            seen = self.state(name)
            if seen is wanted:
                return seen
            if deadline.expired:
                raise VMStateTimeout(
                    f"VM '{name}' on '{self.uri}' did not reach state '{wanted}' "
                    f"within {format_seconds(timeout)}; "
                    f"last seen state '{seen}'."
                )
            self._sleep(min(poll, max(deadline.remaining(), 0.001)))


class DomainHandle:
    """A named domain on a :class:`HostConnection`; implements :class:`DomainTarget`."""

    def __init__(self, host: HostConnection, name: str) -> None:
        self.host = host
        self._name = name
        self._dom: libvirt.virDomain | None = None
        self._generation = -1

    @property
    def name(self) -> str:
        return self._name

    @property
    def uri(self) -> str:
        return self.host.uri

    def __repr__(self) -> str:
        return f"DomainHandle({self._name!r} on {self.host.uri!r})"

    def _domain(self, conn: libvirt.virConnect) -> libvirt.virDomain:
        if self._dom is None or self._generation != self.host.generation:
            self._dom = self.host.lookup(conn, self._name)
            self._generation = self.host.generation
        return self._dom

    def run(self, fn: Callable[[libvirt.virDomain], T], *, what: str, idempotent: bool) -> T:
        """Run ``fn(domain)`` through :meth:`HostConnection.call` (reconnect + retry rules apply)."""

        def op(conn: libvirt.virConnect) -> T:
            dom = self._domain(conn)
            try:
                return fn(dom)
            except libvirt.libvirtError as err:
                if error_code(err) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                # the cached handle went stale (domain undefined and defined again): look it up once more
                self._dom = None
                return fn(self._domain(conn))

        return self.host.call(op, what=what, idempotent=idempotent)
