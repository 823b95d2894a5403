"""The VDI simulator's backend on the lab: each simulated VM is a real lab guest.

A simulated VM ``<id>`` is the libvirt domain ``atp-vdi-<id>`` whose libvirt UUID is the VM id (so a client can
find a platform VM's domain by UUID, as on the platform), booted from the lab's guest image with the lab's domain
template (guest agent, SPICE with a password, serial log). It gets the lab's memory and one vCPU whatever the
platform record says: the platform's CPU and memory are records only (a small host cannot hold 2 GiB guests).
Decisions are written down in ``docs/vdi-simulator.md``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import libvirt

from ATPLibrary.hosts.connection import is_transport_error
from ATPLibrary.lab.domains import (
    TEMPLATE_KEY,
    domain_xml,
    lab_metadata,
    new_spice_password,
    spice_password_of,
    spice_port_of,
)
from ATPLibrary.lab.image import GuestImage, ensure_image
from ATPLibrary.lab.lab import LAB_URI, Lab, LabState
from ATPLibrary.vdi.sim.backend import DOMAIN_PREFIX, OFF, PAUSED, RUNNING, BackendError, Console, SimVm

#: The template the simulator seeds on the lab: the lab's guest image (what each of its VMs boots).
LAB_TEMPLATE = {"name": "atp-lab-image", "osType": "linux", "cpu": 1, "cores": 1, "memory": 128}

#: Seconds a graceful close may take before the backend reports it failed (the VM keeps its previous status).
SHUTDOWN_TIMEOUT = 60.0

_STATE = {
    libvirt.VIR_DOMAIN_RUNNING: RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PAUSED,
}


class LabBackend:
    """:class:`ATPLibrary.vdi.sim.backend.Backend` on the local lab's libvirt (``qemu:///system``)."""

    def __init__(
        self,
        lab: Lab | None = None,
        *,
        uri: str = LAB_URI,
        log: Callable[[str], None] = lambda _m: None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    ) -> None:
        self.lab = lab or Lab()
        self.uri = uri
        self.log = log
        self.shutdown_timeout = shutdown_timeout
        self._lock = threading.RLock()
        self._conn: libvirt.virConnect | None = None
        self._image: GuestImage | None = None

    # ---------------------------------------------------------------- plumbing
    def _connection(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise BackendError(f"cannot connect to {self.uri}: {exc}") from exc
            return self._conn

    def _lookup(self, vm: SimVm) -> libvirt.virDomain | None:
        """The VM's domain, or None when it is not defined.  Every operation starts here, so a connection that
        died with libvirtd (restarted by `atp lab up`, e.g. for SPICE TLS) is re-opened here, once."""
        for attempt in (1, 2):
            try:
                return self._connection().lookupByName(vm.domain)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                if attempt == 1 and is_transport_error(exc):
                    self.log(f"the libvirt connection to {self.uri} is gone ({exc}); reconnecting")
                    self._drop_connection()
                    continue
                raise BackendError(f"{vm.domain}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop_connection(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def _require(self, vm: SimVm) -> libvirt.virDomain:
        dom = self._lookup(vm)
        if dom is None:
            raise BackendError(f"domain {vm.domain} is not defined on {self.uri}")
        return dom

    def _current_image(self) -> GuestImage:
        if self._image is None or not self._image.rootfs.exists():
            self._image = ensure_image(self.lab.dir, self.log)
        return self._image

    @staticmethod
    def _accel() -> str:
        return LabState.load().accel or "qemu"

    def _define(self, vm: SimVm, password: str | None = None) -> libvirt.virDomain:
        spec = self.lab.guest_spec(
            vm.domain, self._current_image(), self._accel(), password or new_spice_password(), uuid=vm.id
        )
        try:
            return self._connection().defineXML(domain_xml(spec))
        except libvirt.libvirtError as exc:
            raise BackendError(f"cannot define {vm.domain}: {exc}") from exc

    @staticmethod
    def _call(vm: SimVm, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except libvirt.libvirtError as exc:
            raise BackendError(f"cannot {what} {vm.domain}: {exc}") from exc

    # ---------------------------------------------------------------- Backend
    def define(self, vm: SimVm) -> None:
        if not vm.domain.startswith(DOMAIN_PREFIX):
            raise BackendError(f"{vm.domain}: simulated domains are named {DOMAIN_PREFIX}<id>")
        with self._lock:
            if self._lookup(vm) is None:
                self._define(vm)
                self.log(f"defined {vm.domain} ({vm.name})")

    def undefine(self, vm: SimVm) -> None:
        with self._lock:
            dom = self._lookup(vm)
            if dom is not None:
                try:
                    self.lab.destroy_and_undefine(dom)
                except libvirt.libvirtError as exc:
                    raise BackendError(f"cannot undefine {vm.domain}: {exc}") from exc
                self.log(f"undefined {vm.domain} ({vm.name})")

    def start(self, vm: SimVm) -> None:
        with self._lock:
            dom = self._require(vm)
            if dom.isActive():
                return
            meta = lab_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) or {}
            if (meta.get("image"), meta.get("template")) != (self._current_image().key, TEMPLATE_KEY):
                # the lab image (or domain template) changed since this VM was defined: boot the current one
                password = spice_password_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
                self._call(vm, "undefine", dom.undefine)
                dom = self._define(vm, password)
            self.lab.serial_log(vm.domain).unlink(missing_ok=True)
            self._call(vm, "start", dom.create)

    def stop(self, vm: SimVm, force: bool) -> None:
        dom = self._require(vm)
        if not dom.isActive():
            return
        if force:
            self._call(vm, "destroy", dom.destroy)
            return
        self._call(vm, "shut down", dom.shutdown)
        deadline = time.monotonic() + self.shutdown_timeout
        while dom.isActive():
            if time.monotonic() > deadline:
                raise BackendError(f"{vm.domain} did not shut down within {self.shutdown_timeout:g} s")
            time.sleep(0.5)

    def suspend(self, vm: SimVm) -> None:
        self._call(vm, "suspend", self._require(vm).suspend)

    def resume(self, vm: SimVm) -> None:
        self._call(vm, "resume", self._require(vm).resume)

    def state(self, vm: SimVm) -> int | None:
        dom = self._lookup(vm)
        if dom is None:
            return None
        try:
            state = dom.state()[0]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise BackendError(f"{vm.domain}: {exc}") from exc
        return _STATE.get(state, OFF)

    def console(self, vm: SimVm) -> Console:
        dom = self._require(vm)
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError as exc:
            raise BackendError(f"{vm.domain}: {exc}") from exc
        port = spice_port_of(xml)
        password = spice_password_of(xml)
        if port is None or password is None:
            raise BackendError(f"{vm.domain} has no SPICE port yet (is it running?)")
        return Console("127.0.0.1", port, password)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None
