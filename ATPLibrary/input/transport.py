"""How input reaches a VM: one choice for every input keyword (``via=``)."""

from __future__ import annotations

from enum import Enum

from ATPLibrary.errors import ConfigurationError


class InputTransport(Enum):
    """Where keyboard and mouse input is injected.

    - ``qmp``: QEMU's ``input-send-event`` through the VM's monitor (libvirt passthrough, so remote hosts
      work). The default.
    - ``spice``: the SPICE inputs channel, the way a VDI user's client sends input.
    """

    QMP = "qmp"
    SPICE = "spice"


def require_available(transport: InputTransport) -> None:
    """Fail clearly for a transport this version cannot use (every transport is available now: ``spice``
    needs an open SPICE session to the VM, which :meth:`LibraryContext.perform_input` checks)."""
    if not isinstance(transport, InputTransport):
        raise ConfigurationError(f"unknown input transport {transport!r}: use qmp or spice")
