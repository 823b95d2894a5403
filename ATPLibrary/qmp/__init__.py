"""QEMU monitor (QMP) client (libvirt passthrough)."""

from ATPLibrary.qmp.monitor import MAX_EVENTS_PER_COMMAND, MonitorClient, chunk_events

__all__ = ["MAX_EVENTS_PER_COMMAND", "MonitorClient", "chunk_events"]
