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
    """Fail clearly for a transport this version cannot use yet."""
    if transport is InputTransport.SPICE:
        raise ConfigurationError(
            "via=spice needs ATPLibrary's SPICE client, which this version does not have yet; use via=qmp (the default)"
        )
