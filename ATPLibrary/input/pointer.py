"""A VM's pointer driven through QMP ``input-send-event``: absolute moves, relative moves, buttons, wheel."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ATPLibrary.input.mouse import (
    MouseButton,
    ScrollDirection,
    abs_events,
    button_event,
    click_events,
    pixel_to_abs,
    rel_events,
    rel_steps,
    scroll_events,
)


class EventSink(Protocol):
    def send_input_events(self, events: Sequence[Mapping[str, Any]]) -> int: ...


class QmpPointer:
    """Mouse of one VM.  ``screen_size`` returns the current (width, height) in pixels."""

    def __init__(
        self,
        sink: EventSink,
        screen_size: Callable[[], tuple[int, int]],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sink = sink
        self.screen_size = screen_size
        self._sleep = sleep

    def move_to(self, x: int, y: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Move to pixel (x, y); returns the absolute axis values sent."""
        width, height = size or self.screen_size()
        ax, ay = pixel_to_abs(x, width, "x"), pixel_to_abs(y, height, "y")
        self.sink.send_input_events(abs_events(ax, ay, (x, y, width, height)))
        return ax, ay

    def move_by(self, dx: int, dy: int) -> list[tuple[int, int]]:
        """Move relatively; large moves are split into steps that add up exactly."""
        steps = rel_steps(dx, dy)
        for sx, sy in steps:
            if sx or sy:
                self.sink.send_input_events(rel_events(sx, sy))
        return steps

    def press(self, button: MouseButton) -> None:
        self.sink.send_input_events([button_event(button, True)])

    def release(self, button: MouseButton) -> None:
        self.sink.send_input_events([button_event(button, False)])

    def click(self, button: MouseButton = MouseButton.LEFT, count: int = 1, interval: float = 0.0) -> None:
        """Press and release ``count`` times (each press and release in its own report)."""
        reports = click_events(button, count)
        for index, report in enumerate(reports):
            self.sink.send_input_events(report)
            if interval and index % 2 == 1 and index < len(reports) - 1:
                self._sleep(interval)

    def scroll(self, direction: ScrollDirection, clicks: int = 1) -> None:
        for report in scroll_events(direction, clicks):
            self.sink.send_input_events(report)

    def drag(
        self,
        start: tuple[int, int],
        end: tuple[int, int],
        button: MouseButton,
        steps: int = 10,
        step_delay: float = 0.01,
    ) -> None:
        """Press at ``start``, move in ``steps`` to ``end``, release there."""
        size = self.screen_size()
        self.move_to(*start, size=size)
        # Validate the end before pressing, so a bad target leaves no button held.
        pixel_to_abs(end[0], size[0], "x"), pixel_to_abs(end[1], size[1], "y")
        self.press(button)
        try:
            for i in range(1, steps + 1):
                x = round(start[0] + (end[0] - start[0]) * i / steps)
                y = round(start[1] + (end[1] - start[1]) * i / steps)
                self.move_to(x, y, size=size)
                if step_delay:
                    self._sleep(step_delay)
        finally:
            self.release(button)
