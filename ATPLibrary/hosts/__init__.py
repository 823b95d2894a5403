"""libvirt hosts: lazily opened connections with keepalive and reconnect, domain state and power."""

from ATPLibrary.hosts.connection import (
    DomainHandle,
    DomainTarget,
    HostConnection,
    ensure_event_loop,
    error_code,
)
from ATPLibrary.hosts.registry import HostRegistry
from ATPLibrary.hosts.state import VMState
from ATPLibrary.hosts.timing import Backoff, Deadline, format_seconds, poll_intervals

__all__ = [
    "Backoff",
    "Deadline",
    "DomainHandle",
    "DomainTarget",
    "HostConnection",
    "HostRegistry",
    "VMState",
    "ensure_event_loop",
    "error_code",
    "format_seconds",
    "poll_intervals",
]
