"""Where a simulated VM's power state really lives.

The simulator keeps each VM's platform status in its own store; a :class:`Backend` performs the power and definition
operations.  :class:`MemoryBackend` holds VMs with no guest behind them (scale tests); a libvirt backend (later)
defines real domains named ``atp-vdi-<vm id>`` (see :func:`domain_name`).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Protocol

from ATPLibrary.errors import ATPError

DOMAIN_PREFIX = "atp-vdi-"

# platform statuses (DomainVO.status)
OFF, RUNNING, PAUSED, OPERATING = 0, 1, 2, 5


def domain_name(vm_id: str) -> str:
    """The backend (libvirt) domain name of a simulated VM."""
    return f"{DOMAIN_PREFIX}{vm_id}"


@dataclass(frozen=True)
class SimVm:
    """What a backend needs to know about a VM."""

    id: str
    name: str
    cpu: int = 1
    memory: int = 1024
    template_id: str | None = None

    @property
    def domain(self) -> str:
        return domain_name(self.id)


@dataclass(frozen=True)
class Console:
    host: str
    port: int
    password: str


class BackendError(ATPError):
    """A backend operation failed (its message becomes the VM's ``errorMsg`` / the event's ``errorReason``)."""


class Backend(Protocol):
    def define(self, vm: SimVm) -> None: ...
    def undefine(self, vm: SimVm) -> None: ...
    def start(self, vm: SimVm) -> None: ...
    def stop(self, vm: SimVm, force: bool) -> None: ...
    def suspend(self, vm: SimVm) -> None: ...
    def resume(self, vm: SimVm) -> None: ...
    def state(self, vm: SimVm) -> int | None:
        """The platform status (0 off, 1 running, 2 paused) or ``None`` when the domain is not defined."""
        ...

    def console(self, vm: SimVm) -> Console: ...


class MemoryBackend:
    """VMs with no guest behind them: state in a dict, operations always succeed on a defined VM."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._state: dict[str, int] = {}
        self._console: dict[str, Console] = {}

    def _require(self, vm: SimVm) -> None:
        if vm.domain not in self._state:
            raise BackendError(f"domain {vm.domain} is not defined")

    def define(self, vm: SimVm) -> None:
        with self._lock:
            self._state.setdefault(vm.domain, OFF)
            port = 5900 + len(self._console)
            self._console.setdefault(vm.domain, Console(self.host, port, secrets.token_urlsafe(8)))

    def undefine(self, vm: SimVm) -> None:
        with self._lock:
            self._state.pop(vm.domain, None)
            self._console.pop(vm.domain, None)

    def _set(self, vm: SimVm, status: int) -> None:
        with self._lock:
            self._require(vm)
            self._state[vm.domain] = status

    def start(self, vm: SimVm) -> None:
        self._set(vm, RUNNING)

    def stop(self, vm: SimVm, force: bool) -> None:
        self._set(vm, OFF)

    def suspend(self, vm: SimVm) -> None:
        self._set(vm, PAUSED)

    def resume(self, vm: SimVm) -> None:
        self._set(vm, RUNNING)

    def state(self, vm: SimVm) -> int | None:
        with self._lock:
            return self._state.get(vm.domain)

    def console(self, vm: SimVm) -> Console:
        with self._lock:
            self._require(vm)
            return self._console[vm.domain]
