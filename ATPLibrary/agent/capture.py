"""What the session needs from an input capture (Linux evdev, Windows hooks, or a fake in tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

#: Called from the capture's own thread with a batch of messages (``raw_input_event``, ``dropped``, ``devices``,
#: ``error``). It must never block: the session puts them on its inbox queue.
Emit = Callable[[list[dict[str, Any]]], None]

#: The clear message of failure kind 11 (a reader that silently sees nothing).
NO_READABLE_DEVICES = "no readable /dev/input/event*: run as root or add the user to group 'input'"


class Capture(Protocol):
    def start(self, emit: Emit) -> None:
        """Open every device, start capturing in a thread and return (only once every device is open)."""

    def stop(self) -> None:
        """Stop the thread and close the devices."""

    def devices(self) -> list[dict[str, Any]]:
        """The open devices: ``{"path", "name", "classes"}``."""

    @property
    def ready(self) -> bool:
        """Whether input can be seen at all (at least one device open)."""

    @property
    def error(self) -> str | None:
        """Why input cannot be seen (``ready`` is False), for ``hello`` and an ``error`` message."""
