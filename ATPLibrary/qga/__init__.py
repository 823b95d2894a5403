"""QEMU guest agent client (libvirt passthrough)."""

from ATPLibrary.qga.agent import ExecResult, GuestAgent, is_agent_not_ready

__all__ = ["ExecResult", "GuestAgent", "is_agent_not_ready"]
