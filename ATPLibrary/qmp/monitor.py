"""QEMU monitor (QMP) client over libvirt's ``qemuMonitorCommand`` passthrough (works on remote URIs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import libvirt

from ATPLibrary.errors import QMPCommandError, QMPError, VMStateError
from ATPLibrary.hosts.connection import DomainTarget, error_code

MonitorCommandFunc = Callable[[Any, str, int], str]

#: QEMU drops a whole input-send-event command with more than 63 events (64-slot virtqueue, one SYN_REPORT).
MAX_EVENTS_PER_COMMAND = 60


def _default_monitor_command(dom: Any, cmd: str, flags: int) -> str:
    import libvirt_qemu

    return str(libvirt_qemu.qemuMonitorCommand(dom, cmd, flags))


def chunk_events(
    events: Sequence[Mapping[str, Any]], limit: int = MAX_EVENTS_PER_COMMAND
) -> list[list[Mapping[str, Any]]]:
    """Split events into consecutive lists of at most ``limit`` events (order kept)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return [list(events[i : i + limit]) for i in range(0, len(events), limit)]


class MonitorClient:
    """QMP of one domain.  ``monitor_command`` defaults to ``libvirt_qemu.qemuMonitorCommand``."""

    def __init__(self, target: DomainTarget, *, monitor_command: MonitorCommandFunc | None = None) -> None:
        self.target = target
        self._monitor_command = monitor_command or _default_monitor_command
        self.commands_sent = 0

    def execute(
        self, command: str, arguments: Mapping[str, Any] | None = None, *, idempotent: bool | None = None
    ) -> Any:
        """Run one QMP command and return its ``return`` value.

        An error reply raises QMPCommandError (``error_class``, ``desc``).  ``idempotent`` (retry once after
        a reconnect) defaults to True for ``query-*`` commands.
        """
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = dict(arguments)
        payload = json.dumps(request)
        retry = command.startswith("query-") if idempotent is None else idempotent
        where = f"VM '{self.target.name}' ({self.target.uri})"
        try:
            reply_text = self.target.run(
                lambda dom: self._monitor_command(dom, payload, 0),
                what=f"QMP command {command}",
                idempotent=retry,
            )
        except libvirt.libvirtError as err:
            if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID:
                raise VMStateError(f"{where}: cannot send QMP command {command}: {err}") from err
            raise QMPError(f"{where}: QMP command {command} failed: {err}") from err
        self.commands_sent += 1
        try:
            reply = json.loads(reply_text)
        except (TypeError, ValueError) as err:
            raise QMPError(f"{where}: QMP reply to {command} is not JSON: {reply_text!r}") from err
        if isinstance(reply, dict) and "error" in reply:
            error = reply["error"] or {}
            error_class = str(error.get("class", "GenericError"))
            desc = str(error.get("desc", error))
            raise QMPCommandError(
                f"{where}: QMP command {command} failed: {error_class}: {desc}", error_class, desc
            )
        if isinstance(reply, dict) and "return" in reply:
            return reply["return"]
        return reply

    def send_input_events(
        self, events: Sequence[Mapping[str, Any]], *, limit: int = MAX_EVENTS_PER_COMMAND
    ) -> int:
        """Send ``input-send-event`` commands of at most ``limit`` (<= 60) events each, in order.

        Returns the number of commands sent.
        """
        limit = min(limit, MAX_EVENTS_PER_COMMAND)
        chunks = chunk_events(events, limit)
        for chunk in chunks:
            self.execute("input-send-event", {"events": chunk})
        return len(chunks)

    def status(self) -> dict[str, Any]:
        """``query-status``: ``{"running": bool, "status": "running"|"paused"|...}``."""
        result = self.execute("query-status")
        return dict(result) if isinstance(result, Mapping) else {}
