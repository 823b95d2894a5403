"""Keyboard input through QMP ``input-send-event`` (qcodes), with explicit shift and bounded batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ATPLibrary.hosts.timing import Sleep
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord
from ATPLibrary.keys.layout import US, KeyAction, Layout, combo_actions
from ATPLibrary.qmp.monitor import MAX_EVENTS_PER_COMMAND, MonitorClient

#: 15 characters need at most 60 events (shift down, key down, key up, shift up each).
CHARS_PER_COMMAND = 15


def key_event(action: KeyAction) -> dict[str, Any]:
    """One QMP ``input-send-event`` key event."""
    return {"type": "key", "data": {"down": action.down, "key": {"type": "qcode", "data": action.key.qcode}}}


class QmpKeyboard:
    """Presses key combos and types text on one VM through its :class:`MonitorClient`."""

    def __init__(
        self,
        monitor: MonitorClient,
        *,
        layout: Layout = US,
        keymap: KeyMap = DEFAULT_KEYMAP,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.monitor = monitor
        self.layout = layout
        self.keymap = keymap
        self._sleep = sleep

    def press_combos(self, combos: Sequence[str]) -> list[list[KeyRecord]]:
        """Press each combo in order: all keys down in order, then up in reverse order.

        Every combo is parsed before anything is sent.  Returns the parsed combos.
        """
        parsed = [self.keymap.parse_combo(c) for c in combos]
        for keys in parsed:
            self.press(keys)
        return parsed

    def press(self, keys: Sequence[KeyRecord]) -> None:
        downs, ups = combo_actions(list(keys))
        self.monitor.send_input_events([key_event(a) for a in downs])
        self.monitor.send_input_events([key_event(a) for a in ups])

    def type_text(
        self,
        text: str,
        *,
        delay: float = 0.0,
        chars_per_command: int = CHARS_PER_COMMAND,
        secret: bool = False,
    ) -> int:
        """Type ``text`` exactly: one press/release per character, explicit shift for shifted characters.

        Without ``delay`` up to ``chars_per_command`` (<= 15) characters go into one command; with a delay
        each character is its own command followed by a sleep.  Every character is checked before anything
        is sent.
        Returns the number of commands sent.
        """
        strokes = self.layout.strokes(text, secret=secret)
        per_char = [[key_event(a) for a in self.layout.actions(s)] for s in strokes]
        if delay > 0:
            for index, events in enumerate(per_char):
                self.monitor.send_input_events(events)
                if index < len(per_char) - 1:
                    self._sleep(delay)
            return len(per_char)
        per_command = max(1, min(chars_per_command, MAX_EVENTS_PER_COMMAND // 4))
        commands = 0
        for start in range(0, len(per_char), per_command):
            batch = [event for events in per_char[start : start + per_command] for event in events]
            commands += self.monitor.send_input_events(batch)
        return commands
