"""QEMU monitor (QMP) client over libvirt passthrough or a QMP unix socket, and keyboard input over it."""

from ATPLibrary.qmp.keyboard import CHARS_PER_COMMAND, QmpKeyboard, key_event
from ATPLibrary.qmp.monitor import MAX_EVENTS_PER_COMMAND, MonitorClient, chunk_events
from ATPLibrary.qmp.socket_transport import SocketQmpTransport
from ATPLibrary.qmp.transport import LibvirtQmpTransport, QmpTransport

__all__ = [
    "CHARS_PER_COMMAND",
    "MAX_EVENTS_PER_COMMAND",
    "LibvirtQmpTransport",
    "MonitorClient",
    "QmpKeyboard",
    "QmpTransport",
    "SocketQmpTransport",
    "chunk_events",
    "key_event",
]
