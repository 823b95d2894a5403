"""QEMU monitor (QMP) client (libvirt passthrough) and keyboard input over it."""

from ATPLibrary.qmp.keyboard import CHARS_PER_COMMAND, QmpKeyboard, key_event
from ATPLibrary.qmp.monitor import MAX_EVENTS_PER_COMMAND, MonitorClient, chunk_events

__all__ = [
    "CHARS_PER_COMMAND",
    "MAX_EVENTS_PER_COMMAND",
    "MonitorClient",
    "QmpKeyboard",
    "chunk_events",
    "key_event",
]
