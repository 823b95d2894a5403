"""Record what an input action would send, so it can be verified: expectation first, then the real send.

A verified keyword runs its action twice over: once against a :class:`RecordingSink` (nothing reaches the
VM; the QMP events and the pauses between them are recorded), then the verification server gets the whole
expected sequence, and only then :meth:`RecordingSink.replay` sends the same commands with the same pauses.
So every input path (keys, text, mouse, drag) is verified from exactly what it sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class EventSink(Protocol):
    def send_input_events(self, events: Sequence[Mapping[str, Any]]) -> int: ...


@dataclass
class RecordingSink:
    """Stands in for a MonitorClient: records ``send_input_events`` calls and sleeps instead of doing them."""

    steps: list[tuple[str, Any]] = field(default_factory=list)

    def send_input_events(self, events: Sequence[Mapping[str, Any]], **_kwargs: Any) -> int:
        self.steps.append(("send", [dict(e) for e in events]))
        return 1

    def sleep(self, seconds: float) -> None:
        self.steps.append(("sleep", seconds))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for kind, payload in self.steps if kind == "send" for event in payload]

    def replay(self, sink: EventSink, sleep: Callable[[float], None]) -> int:
        """Send the recorded commands, in order, with the recorded pauses; returns the commands sent."""
        commands = 0
        for kind, payload in self.steps:
            if kind == "send":
                commands += sink.send_input_events(payload)
            else:
                sleep(payload)
        return commands
