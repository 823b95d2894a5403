"""QEMU monitor (QMP) client over a :class:`~ATPLibrary.qmp.transport.QmpTransport`.

The transport is libvirt's ``qemuMonitorCommand`` passthrough (works on remote URIs) or a direct QMP unix
socket; callers do not see the difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ATPLibrary.hosts.connection import DomainTarget
from ATPLibrary.qmp.transport import LibvirtQmpTransport, MonitorCommandFunc, QmpTransport

#: QEMU drops a whole input-send-event command with more than 63 events (64-slot virtqueue, one SYN_REPORT).
MAX_EVENTS_PER_COMMAND = 60


def chunk_events(
    events: Sequence[Mapping[str, Any]], limit: int = MAX_EVENTS_PER_COMMAND
) -> list[list[Mapping[str, Any]]]:
    """Split events into consecutive lists of at most ``limit`` events (order kept)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return [list(events[i : i + limit]) for i in range(0, len(events), limit)]


class MonitorClient:
    """QMP of one VM through ``transport``; every command is bounded by ``timeout`` seconds.

    A :class:`~ATPLibrary.hosts.connection.DomainTarget` (e.g. a ``DomainHandle``) is also accepted and wrapped
    in a :class:`LibvirtQmpTransport` (``monitor_command`` is passed on to it).
    """

    def __init__(
        self,
        transport: QmpTransport | DomainTarget,
        *,
        timeout: float = 30.0,
        monitor_command: MonitorCommandFunc | None = None,
    ) -> None:
        if isinstance(transport, QmpTransport):
            if monitor_command is not None:
                raise TypeError("monitor_command only applies to a DomainTarget, not to a QmpTransport")
            self.transport: QmpTransport = transport
        else:
            self.transport = LibvirtQmpTransport(transport, monitor_command=monitor_command)
        self.timeout = timeout
        self.commands_sent = 0

    def __repr__(self) -> str:
        return f"MonitorClient({self.transport!r})"

    def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run one QMP command and return its ``return`` value.

        An error reply raises QMPCommandError (``error_class``, ``desc``).  ``idempotent`` (retry once after
        a reconnect) defaults to True for ``query-*`` commands.  ``timeout`` defaults to the client's.
        """
        retry = command.startswith("query-") if idempotent is None else idempotent
        result = self.transport.execute(
            command,
            arguments,
            self.timeout if timeout is None else timeout,
            idempotent=retry,
        )
        self.commands_sent += 1
        return result

    def send_input_events(self, events: Sequence[Mapping[str, Any]], *, limit: int = MAX_EVENTS_PER_COMMAND) -> int:
        """Send ``input-send-event`` commands of at most ``limit`` (<= 60) events each, in order.

        Returns the number of commands sent.
        """
        limit = min(limit, MAX_EVENTS_PER_COMMAND)
        # QMP takes only "type" and "data"; other keys (the pixel an abs value came from) are the library's own
        chunks = chunk_events([{k: v for k, v in e.items() if k in ("type", "data")} for e in events], limit)
        for chunk in chunks:
            self.execute("input-send-event", {"events": chunk})
        return len(chunks)

    def status(self) -> dict[str, Any]:
        """``query-status``: ``{"running": bool, "status": "running"|"paused"|...}``."""
        result = self.execute("query-status")
        return dict(result) if isinstance(result, Mapping) else {}
