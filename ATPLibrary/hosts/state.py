"""Domain states as a readable enum (the words ``virsh domstate`` prints)."""

from __future__ import annotations

from enum import Enum

from ATPLibrary.errors import ConfigurationError


class VMState(Enum):
    """A libvirt domain state.  ``str(state)`` is the word virsh uses, e.g. ``shut off``."""

    NOSTATE = "no state"
    RUNNING = "running"
    BLOCKED = "idle"
    PAUSED = "paused"
    SHUTDOWN = "in shutdown"
    SHUTOFF = "shut off"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_libvirt(cls, code: int) -> VMState:
        """Map ``virDomainState`` (0..7) to the enum; unknown codes read as ``no state``."""
        return _BY_CODE.get(code, cls.NOSTATE)

    @classmethod
    def parse(cls, text: str | VMState) -> VMState:
        """Accept ``running``, ``shut off``, ``SHUTOFF``, ``stopped``, ... (case-insensitive)."""
        if isinstance(text, VMState):
            return text
        key = "".join(ch for ch in str(text).lower() if ch.isalnum())
        state = _ALIASES.get(key)
        if state is None:
            known = ", ".join(f"'{s.value}'" for s in cls)
            raise ConfigurationError(f"Unknown VM state '{text}'. Use one of {known}.")
        return state


_BY_CODE: dict[int, VMState] = {
    0: VMState.NOSTATE,
    1: VMState.RUNNING,
    2: VMState.BLOCKED,
    3: VMState.PAUSED,
    4: VMState.SHUTDOWN,
    5: VMState.SHUTOFF,
    6: VMState.CRASHED,
    7: VMState.PMSUSPENDED,
}

_ALIASES: dict[str, VMState] = {
    "nostate": VMState.NOSTATE,
    "running": VMState.RUNNING,
    "idle": VMState.BLOCKED,
    "blocked": VMState.BLOCKED,
    "paused": VMState.PAUSED,
    "suspended": VMState.PAUSED,
    "inshutdown": VMState.SHUTDOWN,
    "shuttingdown": VMState.SHUTDOWN,
    "shutoff": VMState.SHUTOFF,
    "off": VMState.SHUTOFF,
    "stopped": VMState.SHUTOFF,
    "crashed": VMState.CRASHED,
    "pmsuspended": VMState.PMSUSPENDED,
}
