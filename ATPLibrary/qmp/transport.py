"""How QMP commands reach QEMU: one small interface and its libvirt passthrough implementation.

:class:`QmpTransport` is what :class:`~ATPLibrary.qmp.monitor.MonitorClient` talks to.  Two implementations:

- :class:`LibvirtQmpTransport` (the default) sends each command through libvirt's ``qemuMonitorCommand``
  passthrough, so it works wherever the libvirt connection works, remote ``qemu+ssh://`` hosts included.
- :class:`~ATPLibrary.qmp.socket_transport.SocketQmpTransport` talks to a QMP unix socket directly, for QEMU
  that libvirt does not manage (or an extra monitor of a libvirt guest); it also receives QMP events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import libvirt

from ATPLibrary.errors import QMPCommandError, QMPError, VMStateError
from ATPLibrary.hosts.connection import DomainTarget, error_code

MonitorCommandFunc = Callable[[Any, str, int], str]


@runtime_checkable
class QmpTransport(Protocol):
    """Runs one QMP command and returns its ``return`` value.

    Implementations raise :class:`QMPCommandError` for an error reply (QEMU's ``class`` and ``desc``) and
    :class:`QMPError` (or another :class:`~ATPLibrary.errors.ATPError`) when the command could not be
    delivered or answered; the message names the VM or socket and says what to do.  (``isinstance`` checks
    only that ``description``, ``execute`` and ``close`` exist.)
    """

    @property
    def description(self) -> str:
        """Where commands go, for messages: ``VM 'x' (qemu:///system)`` or ``QMP socket /run/x.sock``."""
        ...

    def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        *,
        idempotent: bool = False,
    ) -> Any:
        """Run ``command``; ``idempotent`` allows one retry after a broken connection."""
        ...

    def close(self) -> None:
        """Release the connection, if the transport holds one (it is opened again on next use)."""
        ...


def command_error(where: str, command: str, error: Any) -> QMPCommandError:
    """A :class:`QMPCommandError` for QEMU's ``{"error": {"class": ..., "desc": ...}}`` reply body."""
    error = error if isinstance(error, Mapping) else {"desc": str(error)}
    error_class = str(error.get("class", "GenericError"))
    desc = str(error.get("desc", error))
    return QMPCommandError(f"{where}: QMP command {command} failed: {error_class}: {desc}", error_class, desc)


def _default_monitor_command(dom: Any, cmd: str, flags: int) -> str:
    import libvirt_qemu

    return str(libvirt_qemu.qemuMonitorCommand(dom, cmd, flags))


class LibvirtQmpTransport:
    """QMP through libvirt's ``qemuMonitorCommand`` passthrough on a :class:`DomainTarget`.

    libvirt owns the monitor socket (and its events); reconnects of the libvirt connection and the retry of
    idempotent commands follow :meth:`~ATPLibrary.hosts.connection.HostConnection.call`.  libvirt bounds the
    monitor call itself, so ``timeout`` is not used.  ``monitor_command`` defaults to
    ``libvirt_qemu.qemuMonitorCommand`` (tests pass a fake).
    """

    def __init__(self, target: DomainTarget, *, monitor_command: MonitorCommandFunc | None = None) -> None:
        self.target = target
        self._monitor_command = monitor_command or _default_monitor_command

    def __repr__(self) -> str:
        return f"LibvirtQmpTransport({self.target!r})"

    @property
    def description(self) -> str:
        return f"VM '{self.target.name}' ({self.target.uri})"

    def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        *,
        idempotent: bool = False,
    ) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = dict(arguments)
        payload = json.dumps(request)
        where = self.description
        try:
            reply_text = self.target.run(
                lambda dom: self._monitor_command(dom, payload, 0),
                what=f"QMP command {command}",
                idempotent=idempotent,
            )
        except libvirt.libvirtError as err:
            if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID:
                raise VMStateError(f"{where}: cannot send QMP command {command}: {err}") from err
            raise QMPError(f"{where}: QMP command {command} failed: {err}") from err
        try:
            reply = json.loads(reply_text)
        except (TypeError, ValueError) as err:
            raise QMPError(f"{where}: QMP reply to {command} is not JSON: {reply_text!r}") from err
        if isinstance(reply, dict) and "error" in reply:
            raise command_error(where, command, reply["error"] or {})
        if isinstance(reply, dict) and "return" in reply:
            return reply["return"]
        return reply

    def close(self) -> None:
        """Nothing to release: the libvirt connection belongs to the host registry."""
